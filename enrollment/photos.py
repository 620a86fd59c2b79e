"""Uploaded images, made safe: size and pixel caps, re-encoded, every bit of metadata gone.

An installer's phone photo carries EXIF (GPS position, camera serial, time) and maybe XMP
and an ICC profile; none of it is kept. ``clean`` applies the EXIF orientation, draws the
pixels onto a fresh image (so nothing of the original's ``info`` can travel along) and
saves that as a JPEG of at most ``MAX_SIDE`` pixels on its longest side.

``open_image`` is the one door for untrusted image bytes (the QR decoder uses it too):
a non-image, a truncated file and a decompression bomb each raise a ``PhotoError`` with
a sentence for the user, never Pillow's own exception or warning.

Memory stays bounded whatever arrives. A small file can claim a huge picture (a 156 KB
PNG of 7000×7000 decodes to 196 MB; twelve at once took the portal from 113 MB to
4.4 GB), so, reading only the header first:

* more than ``MAX_PIXELS`` (50 megapixels, beyond every phone camera's full
  resolution) is refused before any pixel is decoded;
* at most ``DECODE_BUDGET_PIXELS`` are ever decoded: a camera JPEG above it is decoded
  already scaled down by 2, 4 or 8 (libjpeg's DCT scaling, Pillow's ``draft``) — both
  uses need far fewer pixels than a 50 MP camera takes; formats that cannot be scaled
  while decoding (PNG, WebP, progressive JPEG, …) are refused above the budget;
* at most ``DECODE_SLOTS`` images are decoded and processed at once per process
  (``decoding()``); the others wait their turn, and after ``SLOT_WAIT_S`` are told to
  try again.

Together: one portal process holds at most ``DECODE_SLOTS`` × (budget × 4 bytes +
processing copies + ``MAX_UPLOAD_BYTES``), about 250 MB, however many uploads arrive.
"""

import contextlib
import io
import math
import threading
import uuid

from django.core.files.base import ContentFile
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_UPLOAD_BYTES = 15 * 1024 * 1024  # a phone photo is 2 to 8 MB
MAX_PIXELS = 50_000_000  # 50 megapixels: every phone camera's full resolution fits
DECODE_BUDGET_PIXELS = 4096 * 3072  # 12.6 MP: the most ever decoded at once per image
DECODE_SLOTS = 2  # images decoded and processed at once, per process
SLOT_WAIT_S = 30.0
SCALABLE = ("JPEG", "MPO")  # decoded scaled down by libjpeg (``Image.draft``)
MAX_SIDE = 2048  # stored photos are downscaled to this longest side
JPEG_QUALITY = 85
# What phones and scanners produce (JPEG includes the multi-picture MPO of many phones).
FORMATS = ("JPEG", "PNG", "WEBP", "AVIF", "GIF", "BMP", "TIFF")

NOT_AN_IMAGE = "This file is not an image (JPEG, PNG, WebP, AVIF, GIF, BMP or TIFF)."
UNREADABLE = "This image is damaged or incomplete; take the photo again."
TOO_MANY_PIXELS = f"This image is too large: at most {MAX_PIXELS // 1_000_000} megapixels."
TOO_MANY_UNSCALED = (
    f"This image is too large for its format: at most {DECODE_BUDGET_PIXELS // 1_000_000} "
    f"megapixels, or a camera JPEG of up to {MAX_PIXELS // 1_000_000}."
)
BUSY = "The portal is busy with other photos; try again in a moment."
TOO_BIG = f"This file is too large: at most {MAX_UPLOAD_BYTES // (1024 * 1024)} MB."
EMPTY = "The file is empty."

Image.init()  # every plugin registered: ``Image.open(formats=...)`` looks each one up


class PhotoError(ValueError):
    """An upload refused, with a sentence for the user."""


def read_upload(upload, limit: int = MAX_UPLOAD_BYTES) -> bytes:
    """The bytes of an uploaded file (or bytes), refusing more than ``limit``."""
    if isinstance(upload, bytes | bytearray):
        data = bytes(upload)
    else:
        size = getattr(upload, "size", None)
        if size is not None and size > limit:
            raise PhotoError(TOO_BIG)
        if hasattr(upload, "seek"):
            upload.seek(0)
        data = upload.read(limit + 1)
    if len(data) > limit:
        raise PhotoError(TOO_BIG)
    if not data:
        raise PhotoError(EMPTY)
    return data


_slots = threading.BoundedSemaphore(DECODE_SLOTS)


@contextlib.contextmanager
def decoding(wait_s: float = SLOT_WAIT_S):
    """Hold one of the process's ``DECODE_SLOTS`` while decoding and processing an image."""
    if not _slots.acquire(timeout=wait_s):
        raise PhotoError(BUSY)
    try:
        yield
    finally:
        _slots.release()


def _scale_for(width: int, height: int, budget: int) -> int | None:
    """The smallest JPEG scale-down (1, 2, 4 or 8) that fits ``budget`` pixels."""
    for scale in (1, 2, 4, 8):
        if math.ceil(width / scale) * math.ceil(height / scale) <= budget:
            return scale
    return None


def open_image(
    data: bytes,
    max_pixels: int = MAX_PIXELS,
    budget: int = DECODE_BUDGET_PIXELS,
    mode: str | None = None,
) -> Image.Image:
    """The decoded first frame of untrusted image bytes, or ``PhotoError``.

    The pixel caps are checked from the header, before any pixel is decoded (see the
    module's docstring); Pillow's own decompression-bomb warning and error become the
    same refusal. ``mode="L"`` lets a JPEG decode straight to grey (the QR reader's).
    Call it inside ``decoding()``.
    """
    # Pillow warns above Image.MAX_IMAGE_PIXELS (89 M) and raises above twice that; our
    # cap is lower, so a warned-about image is refused here anyway. (No catch_warnings:
    # it changes process-wide state, unsafe in a threaded server. Where warnings are
    # errors, as in the tests, the warning is caught below.)
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        width, height = image.size
        if width * height > max_pixels:
            raise PhotoError(TOO_MANY_PIXELS)
        scalable = image.format in SCALABLE and not image.info.get("progressive")
        if width * height > budget or (mode and scalable):
            scale = _scale_for(width, height, budget) if scalable else None
            if scale is None:
                raise PhotoError(TOO_MANY_UNSCALED)
            image.draft(mode, (width // scale, height // scale))
            if image.width * image.height > budget:  # never: draft scales at least this much
                raise PhotoError(TOO_MANY_UNSCALED)
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoError(TOO_MANY_PIXELS) from exc
    except UnidentifiedImageError as exc:
        raise PhotoError(NOT_AN_IMAGE) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if isinstance(exc, PhotoError):
            raise
        raise PhotoError(UNREADABLE) from exc
    return image


def clean(upload) -> bytes:
    """A re-encoded JPEG of the upload: upright, at most ``MAX_SIDE`` px, no metadata."""
    with decoding():
        return _clean(read_upload(upload))


def _clean(data: bytes) -> bytes:
    image = open_image(data)
    # A broken orientation tag: keep the pixels as they are.
    with contextlib.suppress(OSError, SyntaxError, ValueError, KeyError, TypeError):
        image = ImageOps.exif_transpose(image)
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    # Pixels only, onto a fresh image: no EXIF, XMP, ICC profile or comment survives.
    fresh = Image.new("RGB", image.size, "white")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        fresh.paste(rgba, mask=rgba.getchannel("A"))
    else:
        fresh.paste(image.convert("RGB"))
    out = io.BytesIO()
    fresh.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


def attach(record, jpeg: bytes) -> None:
    """Store a cleaned photo on an enrollment record (replacing and deleting the old one)."""
    old = record.photo.name if record.photo else ""
    name = f"{record.pk}-{uuid.uuid4().hex[:16]}.jpg"
    record.photo.save(name, ContentFile(jpeg), save=False)
    record.save(update_fields=["photo", "updated_at"])
    if old and old != record.photo.name:
        record.photo.storage.delete(old)
