"""Image uploads cannot exhaust memory (issue 10, point 6).

A 156 KB PNG can claim 7000×7000 pixels, 196 MB decoded; twelve at once took the
portal from 113 MB to 4.4 GB. Now: beyond a phone camera's pixel count is refused from
the header, camera JPEGs are decoded already scaled down, other formats only within
the decode budget, and at most ``DECODE_SLOTS`` decodes run at once.
"""

import io
import threading

import pytest
from PIL import Image, ImageFile

from enrollment import photos, qr
from tests.test_enrollment_qr import KEY


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


@pytest.fixture
def decodes(monkeypatch):
    """The sizes of every image that was actually decoded (``load()`` reached the pixels)."""
    sizes = []
    load = ImageFile.ImageFile.load

    def counting_load(self):
        if self.tile:  # pixels still to decode
            sizes.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    return sizes


def test_a_small_png_of_7000_by_7000_is_refused_before_any_pixel_is_decoded(decodes):
    data = encoded(Image.new("RGB", (7000, 7000), "white"), "PNG")
    assert len(data) < 1_000_000  # small on the wire, 196 MB decoded
    with pytest.raises(photos.PhotoError, match="too large for its format"):
        qr.decode_image(data)
    with pytest.raises(photos.PhotoError, match="too large for its format"):
        photos.clean(data)
    assert decodes == []


def test_a_big_camera_jpeg_is_decoded_scaled_down_within_the_budget(decodes):
    label = qr.image(qr.format("SN-BIG-1", KEY, "Thermostat"), scale=40).convert("RGB")
    photo = Image.new("RGB", (7000, 7000), "white")
    photo.paste(label, (3000, 3000))
    data = encoded(photo, "JPEG", quality=85)
    assert qr.decode_image(data).serial_number == "SN-BIG-1"
    cleaned = photos.clean(data)
    with Image.open(io.BytesIO(cleaned)) as after:
        assert after.size == (photos.MAX_SIDE, photos.MAX_SIDE)
    assert decodes and all(w * h <= photos.DECODE_BUDGET_PIXELS for w, h in decodes)
    assert max(w for w, _ in decodes) == 3500  # halved while decoding, never full size


def test_a_progressive_jpeg_above_the_budget_is_refused(decodes):
    data = encoded(Image.new("RGB", (5000, 4000), "white"), "JPEG", progressive=True)
    with pytest.raises(photos.PhotoError, match="too large for its format"):
        photos.clean(data)
    assert decodes == []


def test_small_images_of_any_format_still_decode_at_full_size():
    data = encoded(Image.new("RGB", (1200, 900), "white"), "PNG")
    assert photos.open_image(data).size == (1200, 900)


def test_at_most_decode_slots_images_are_decoded_at_once():
    held, release = threading.Barrier(photos.DECODE_SLOTS + 1), threading.Event()

    def hold_a_slot():
        with photos.decoding():
            held.wait(5)
            release.wait(5)

    threads = [threading.Thread(target=hold_a_slot) for _ in range(photos.DECODE_SLOTS)]
    for thread in threads:
        thread.start()
    held.wait(5)  # every slot is taken
    try:
        with pytest.raises(photos.PhotoError, match="busy"), photos.decoding(wait_s=0.05):
            pass
    finally:
        release.set()
        for thread in threads:
            thread.join(5)
    with photos.decoding(wait_s=1):  # and free again afterwards
        pass
