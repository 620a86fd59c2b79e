"""Uploaded images, made safe: size and pixel caps, re-encoded, every bit of metadata gone.

An installer's phone photo carries EXIF (GPS position, camera serial, time) and maybe XMP
and an ICC profile; none of it is kept. ``clean`` applies the EXIF orientation, draws the
pixels onto a fresh image (so nothing of the original's ``info`` can travel along) and
saves that as a JPEG of at most ``MAX_SIDE`` pixels on its longest side.

``open_image`` is the one door for untrusted image bytes (the QR decoder uses it too):
a non-image, a truncated file and a decompression bomb each raise a ``PhotoError`` with
a sentence for the user, never Pillow's own exception or warning.
"""

import contextlib
import io
import uuid

from django.core.files.base import ContentFile
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_UPLOAD_BYTES = 15 * 1024 * 1024  # a phone photo is 2 to 8 MB
MAX_PIXELS = 50_000_000  # 50 megapixels: every phone camera's full resolution fits
MAX_SIDE = 2048  # stored photos are downscaled to this longest side
JPEG_QUALITY = 85
# What phones and scanners produce (JPEG includes the multi-picture MPO of many phones).
FORMATS = ("JPEG", "PNG", "WEBP", "AVIF", "GIF", "BMP", "TIFF")

NOT_AN_IMAGE = "This file is not an image (JPEG, PNG, WebP, AVIF, GIF, BMP or TIFF)."
UNREADABLE = "This image is damaged or incomplete; take the photo again."
TOO_MANY_PIXELS = f"This image is too large: at most {MAX_PIXELS // 1_000_000} megapixels."
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


def open_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The decoded first frame of untrusted image bytes, or ``PhotoError``.

    The pixel cap is checked from the header, before any pixel is decoded; Pillow's own
    decompression-bomb warning and error become the same refusal.
    """
    # Pillow warns above Image.MAX_IMAGE_PIXELS (89 M) and raises above twice that; our
    # cap is lower, so a warned-about image is refused here anyway. (No catch_warnings:
    # it changes process-wide state, unsafe in a threaded server. Where warnings are
    # errors, as in the tests, the warning is caught below.)
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        if image.width * image.height > max_pixels:
            raise PhotoError(TOO_MANY_PIXELS)
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
    image = open_image(read_upload(upload))
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
