"""QR payloads (parse, format, decode from a photo), installation photos and label sheets.

The image helpers here (``qr_photo``, ``gps_jpeg``, ``bomb_png``…) are shared with the
API and installer tests.
"""

import io
import random
import struct
import zlib
from types import SimpleNamespace

import pytest
import zxingcpp
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import ExifTags, Image

from enrollment import labels, photos, qr

KEY = "s3cret-Key-0042"


# -- image helpers ---------------------------------------------------------------------


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def noisy_background(size=(1400, 1000), seed=7) -> Image.Image:
    """Grey noise with random shapes: something a camera might see around a label."""
    rng = random.Random(seed)
    background = Image.effect_noise(size, 40).convert("RGB")
    from PIL import ImageDraw

    draw = ImageDraw.Draw(background)
    for _ in range(40):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.rectangle((x, y, x + rng.randrange(10, 120), y + rng.randrange(10, 80)), fill=colour)
    return background


def qr_photo(text: str, *, angle=0.0, scale=6, fmt="JPEG", size=(1400, 1000)) -> bytes:
    """A photo-like image of a QR code of ``text``: rotated, scaled, on a noisy background."""
    code = qr.image(text, scale=scale).convert("RGB")
    if angle:
        code = code.rotate(angle, expand=True, fillcolor="white", resample=Image.Resampling.BICUBIC)
    background = noisy_background(size)
    background.paste(code, ((size[0] - code.width) // 3, (size[1] - code.height) // 2))
    out = io.BytesIO()
    background.save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def label_photo(serial="SN-QR-1", key=KEY, device_type="Thermostat", **kwargs) -> bytes:
    return qr_photo(qr.format(serial, key, device_type), **kwargs)


GPS = {
    ExifTags.GPS.GPSLatitudeRef: "N",
    ExifTags.GPS.GPSLatitude: (52.0, 22.0, 12.5),
    ExifTags.GPS.GPSLongitudeRef: "E",
    ExifTags.GPS.GPSLongitude: (4.0, 53.0, 2.25),
}
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-'
    b'rdf-syntax-ns#"><rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" '
    b'exif:GPSLatitude="52,22.2N"/></rdf:RDF></x:xmpmeta>'
)


def gps_jpeg(size=(1200, 800), orientation=None) -> bytes:
    """A JPEG like a phone's: EXIF with a GPS position (and XMP saying it again)."""
    image = Image.new("RGB", size, (30, 120, 200))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.Model] = "Phone 9 Pro"
    if orientation:
        exif[ExifTags.Base.Orientation] = orientation
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(GPS)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes(), xmp=XMP)
    return out.getvalue()


def bomb_png(width=30_000, height=30_000) -> bytes:
    """A tiny PNG file whose header claims a huge image (a decompression bomb)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def upload(data: bytes, name="photo.jpg", content_type="image/jpeg"):
    return SimpleUploadedFile(name, data, content_type=content_type)


# -- payload: parse and format ---------------------------------------------------------


@pytest.mark.parametrize(
    ("serial", "key", "device_type"),
    [
        ("SN-0001", "abcd", "Thermostat"),
        ("A;B=C%D", "k;e=y%20 with spaces", "Type with ; and ="),
        ("X" * 64, "K" * 128, "T" * 80),
        ("sn/ascii-only", "clé-ünïcode-ключ", "Capteur Ü"),
    ],
)
def test_format_and_parse_round_trip(serial, key, device_type):
    text = qr.format(serial, key, device_type)
    assert text.startswith("FG1;S=")
    assert text.isascii() and " " not in text
    assert qr.parse(text) == qr.Payload(serial, key, device_type)


def test_the_documented_example():
    text = "FG1;S=TH-2024-000123;K=k7%3BQp%3D9xZ;T=Thermostat%20T100"
    assert qr.parse(text) == qr.Payload("TH-2024-000123", "k7;Qp=9xZ", "Thermostat T100")
    assert qr.format("TH-2024-000123", "k7;Qp=9xZ", "Thermostat T100") == text


def test_fields_may_come_in_any_order_and_a_trailing_newline_is_ignored():
    assert qr.parse("FG1;T=Lamp;K=abcd;S=SN1\n") == qr.Payload("SN1", "abcd", "Lamp")


def test_a_payload_never_shows_its_key_in_repr():
    payload = qr.parse(qr.format("SN1", KEY, "Lamp"))
    assert KEY not in repr(payload) and KEY not in str(payload)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a Fleetgate enrollment label"),
        ("hello world", "not a Fleetgate enrollment label"),
        ("https://example.com/device/123", "not a Fleetgate enrollment label"),
        ("fg1;S=a;K=abcd;T=x", "not a Fleetgate enrollment label"),
        ("FG2;S=a;K=abcd;T=x", "version FG2"),
        ("FG1", "lacks S (serial number), K (access key), T (device type)"),
        ("FG1;S=a;K=abcd", "lacks T (device type)"),
        ("FG1;K=abcd;T=x", "lacks S (serial number)"),
        ("FG1;S=a;T=x", "lacks K (access key)"),
        ("FG1;S=a;K=abcd;T=x;S=b", "S appears twice"),
        ("FG1;S=a;K=abcd;T=x;X=1", "Unknown field 'X'"),
        ("FG1;S=a;Kabcd;T=x", "is not a field"),
        ("FG1;S=a;K=abcd;T=x;", "is not a field"),
        ("FG1;S=a b;K=abcd;T=x", "S (serial number)"),
        ("FG1;S=a%20b;K=abcd;T=x", "S (serial number)"),
        ("FG1;S=;K=abcd;T=x", "S (serial number)"),
        ("FG1;S=" + "X" * 65 + ";K=abcd;T=x", "S (serial number)"),
        ("FG1;S=a;K=abc;T=x", "K (access key)"),
        ("FG1;S=a;K=" + "k" * 129 + ";T=x", "K (access key)"),
        ("FG1;S=a;K=ab%0Acd;T=x", "K (access key)"),
        ("FG1;S=a;K=%20abcd;T=x", "K (access key) has leading or trailing spaces"),
        ("FG1;S=a;K=abcd;T=", "T (device type)"),
        ("FG1;S=a;K=abcd;T=" + "t" * 81, "T (device type)"),
        ("FG1;S=a;K=abcd;T=x%00", "T (device type)"),
        ("FG1;S=a;K=ab%zzcd;T=x", "not followed by two hex digits"),
        ("FG1;S=a;K=abcd%;T=x", "not followed by two hex digits"),
        ("FG1;S=a;K=ab%FFcd;T=x", "not valid UTF-8"),
        ("FG1;S=a;K=abcd;T=x" + ";" * 600, "longer than 512"),
    ],
)
def test_malformed_payloads_are_refused_with_a_reason(text, message):
    with pytest.raises(qr.PayloadError) as refused:
        qr.parse(text)
    assert message in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_parse_refuses_what_is_not_text():
    with pytest.raises(qr.NotAPayload):
        qr.parse(b"FG1;S=a;K=abcd;T=x")


@pytest.mark.parametrize(
    ("serial", "key", "device_type"),
    [("has space", "abcd", "T"), ("SN", "abc", "T"), ("SN", "abcd", ""), ("SN", " abcd", "T")],
)
def test_format_refuses_what_parse_would_refuse(serial, key, device_type):
    with pytest.raises(qr.PayloadError):
        qr.format(serial, key, device_type)


# -- decoding photos -------------------------------------------------------------------


def test_a_generated_qr_code_decodes():
    text = qr.format("SN-PLAIN", KEY, "Thermostat")
    assert qr.decode_image(png_bytes(qr.image(text))) == qr.Payload("SN-PLAIN", KEY, "Thermostat")


@pytest.mark.parametrize(("angle", "scale"), [(0, 3), (17, 5), (90, 4), (-33, 7)])
def test_a_rotated_scaled_code_on_a_noisy_photo_decodes(angle, scale):
    data = label_photo("SN-PHOTO-9", angle=angle, scale=scale)
    payload = qr.decode_image(data)
    assert payload == qr.Payload("SN-PHOTO-9", KEY, "Thermostat")


def test_a_photo_without_a_qr_code_says_so():
    out = io.BytesIO()
    noisy_background().save(out, "JPEG")
    with pytest.raises(qr.NoCodeFound, match="No QR code was found"):
        qr.decode_image(out.getvalue())


def test_a_photo_with_two_different_codes_is_refused():
    background = noisy_background((1600, 800))
    background.paste(qr.image(qr.format("SN-A", KEY, "T"), 5), (50, 100))
    background.paste(qr.image(qr.format("SN-B", KEY, "T"), 5), (850, 100))
    with pytest.raises(qr.SeveralCodes, match="several different QR codes"):
        qr.decode_image(png_bytes(background))


def test_the_same_code_twice_is_fine():
    code = qr.image(qr.format("SN-TWICE", KEY, "T"), 5)
    background = Image.new("RGB", (1600, 800), "white")
    background.paste(code, (50, 100))
    background.paste(code, (850, 100))
    assert qr.decode_image(png_bytes(background)).serial_number == "SN-TWICE"


def test_a_qr_code_of_the_wrong_format_is_refused():
    with pytest.raises(qr.NotAPayload, match="not a Fleetgate enrollment label"):
        qr.decode_image(qr_photo("https://example.com/product/42"))
    with pytest.raises(qr.PayloadError, match="K \\(access key\\)"):
        qr.decode_image(qr_photo("FG1;S=SN1;K=ab;T=Lamp"))


@pytest.mark.parametrize(
    "data", [b"", b"not an image at all", b"%PDF-1.4\n...", b"\x89PNG\r\n\x1a\n broken"]
)
def test_a_non_image_is_refused(data):
    with pytest.raises(photos.PhotoError):
        qr.decode_image(data)


@pytest.mark.parametrize(
    ("width", "height"),
    [(30_000, 30_000), (10_000, 10_000), (8_000, 8_000)],
    ids=["pillow-error", "pillow-warning", "our-cap"],
)
def test_a_decompression_bomb_is_refused_before_decoding(width, height):
    with pytest.raises(photos.PhotoError, match="too large"):
        qr.decode_image(bomb_png(width, height))


# -- photos ----------------------------------------------------------------------------


def test_gps_and_all_metadata_are_removed():
    original = gps_jpeg()
    with Image.open(io.BytesIO(original)) as before:  # the test photo really has them
        assert before.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        assert "xmp" in before.info
    cleaned = photos.clean(upload(original))
    with Image.open(io.BytesIO(cleaned)) as after:
        assert after.format == "JPEG"
        assert not after.getexif()
        assert not after.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        assert "exif" not in after.info and "xmp" not in after.info
        assert "icc_profile" not in after.info
        assert after.size == (1200, 800)
    assert b"GPS" not in cleaned and b"PhoneMaker" not in cleaned and b"Exif" not in cleaned


def test_the_exif_orientation_is_applied_before_it_is_dropped():
    cleaned = photos.clean(upload(gps_jpeg(size=(600, 400), orientation=6)))
    with Image.open(io.BytesIO(cleaned)) as after:
        assert after.size == (400, 600)


def test_large_photos_are_downscaled_and_other_formats_become_jpeg():
    image = Image.new("RGBA", (4000, 1000), (255, 0, 0, 128))
    cleaned = photos.clean(upload(png_bytes(image), "p.png", "image/png"))
    with Image.open(io.BytesIO(cleaned)) as after:
        assert after.format == "JPEG" and after.mode == "RGB"
        assert after.size == (photos.MAX_SIDE, photos.MAX_SIDE // 4)


def test_a_too_large_upload_is_refused_unread():
    big = upload(b"\xff\xd8" + b"\0" * photos.MAX_UPLOAD_BYTES)
    with pytest.raises(photos.PhotoError, match="at most 15 MB"):
        photos.clean(big)


def test_a_non_image_photo_is_refused():
    with pytest.raises(photos.PhotoError, match="not an image"):
        photos.clean(upload(b"MZ\x90\x00 an executable", "x.jpg"))
    with pytest.raises(photos.PhotoError, match="empty"):
        photos.clean(upload(b"", "x.jpg"))


def test_a_truncated_photo_is_refused():
    data = gps_jpeg()
    with pytest.raises(photos.PhotoError, match="damaged or incomplete"):
        photos.clean(upload(data[: len(data) // 2]))


def test_a_bomb_photo_is_refused():
    with pytest.raises(photos.PhotoError, match="too large"):
        photos.clean(upload(bomb_png(), "bomb.png", "image/png"))


# -- label sheets ----------------------------------------------------------------------


def fake_records(n, prefix="SN-LBL"):
    device_type = SimpleNamespace(name="Thermostat T100")
    return [
        SimpleNamespace(
            serial_number=f"{prefix}-{i:04d}", access_key=f"key-{i:04d}", device_type=device_type
        )
        for i in range(n)
    ]


def test_a_png_sheet_decodes_back_to_every_label():
    records = fake_records(labels.PER_PAGE)
    data = labels.sheet(records, "png")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as page:
        assert page.size == labels.PAGE
        found = zxingcpp.read_barcodes(page.convert("L"))
    payloads = sorted((qr.parse(code.text) for code in found), key=lambda p: p.serial_number)
    assert payloads == [
        qr.Payload(r.serial_number, r.access_key, r.device_type.name) for r in records
    ]


def test_the_key_is_in_the_code_only_never_printed():
    records = fake_records(1)
    data = labels.sheet(records, "pdf")
    assert data.startswith(b"%PDF-")
    assert b"key-0000" not in data


def test_a_pdf_sheet_has_a_page_per_fifteen_labels():
    data = labels.sheet(fake_records(labels.PER_PAGE * 2 + 1), "pdf")
    assert data.startswith(b"%PDF-")
    assert b"/Count 3" in data


@pytest.mark.parametrize(
    ("count", "fmt", "message"),
    [
        (0, "pdf", "at least one"),
        (labels.PER_PAGE + 1, "png", "one page"),
        (labels.MAX_LABELS + 1, "pdf", "At most"),
        (1, "svg", "Choose a format"),
    ],
)
def test_sheets_refuse_what_they_cannot_make(count, fmt, message):
    with pytest.raises(labels.LabelError, match=message):
        labels.sheet(fake_records(count), fmt)
