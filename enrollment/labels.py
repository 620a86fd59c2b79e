"""Printable sheets of QR labels: A4 pages, a grid of labels, one per enrollment record.

Each label is what gets stuck on the device: a QR code of its ``FG1`` payload (serial,
access key, device type — ``enrollment.qr``) with the serial number and the type printed
under it. The key is in the code only, never printed as text. A sheet is the one place
an access key leaves the server, so only users with the ``enroll`` rule get one
(``enrollment.views.installer.LabelsView``) and each sheet is written to the audit log.

Pages are bilevel (mode "1") at 150 dpi: small in memory and in the file, and sharp
when printed. PDF holds any number of pages; a PNG is one image, so it holds one page.
"""

import io

from PIL import Image, ImageDraw, ImageFont

from enrollment import qr

DPI = 150
PAGE = (1240, 1754)  # A4 at 150 dpi (210 x 297 mm)
MARGIN = 60  # about 10 mm
COLUMNS, ROWS = 3, 5
PER_PAGE = COLUMNS * ROWS
MAX_LABELS = 1500  # 100 pages per request
QR_BOX = 250  # the largest the code may be, in pixels (about 42 mm)
FORMATS = ("pdf", "png")
CONTENT_TYPES = {"pdf": "application/pdf", "png": "image/png"}

NONE = "Choose at least one enrollment record."
TOO_MANY = f"At most {MAX_LABELS:,} labels per sheet; print a batch in parts."
PNG_ONE_PAGE = f"A PNG holds one page ({PER_PAGE} labels); choose PDF for more."


class LabelError(ValueError):
    pass


def _font(size):
    return ImageFont.load_default(size=size)


def _fit(draw, text, font, width):
    """``text``, shortened with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _label(page, draw, record, left, top, cell_w, cell_h, fonts):
    code = qr.image(qr.format_record(record), scale=1)
    scale = max(1, QR_BOX // code.width)
    code = code.resize((code.width * scale, code.height * scale), Image.Resampling.NEAREST)
    page.paste(code.convert("1"), (left + (cell_w - code.width) // 2, top + 8))
    y = top + 8 + code.height + 4
    for text, font in ((record.serial_number, fonts[0]), (record.device_type.name, fonts[1])):
        text = _fit(draw, text, font, cell_w - 16)
        width = draw.textlength(text, font=font)
        draw.text((left + (cell_w - width) / 2, y), text, fill=0, font=font)
        y += font.size + 6
    # a light cutting guide around the cell
    draw.rectangle((left, top, left + cell_w - 1, top + cell_h - 1), outline=0, width=1)


def pages(records) -> list[Image.Image]:
    records = list(records)
    cell_w = (PAGE[0] - 2 * MARGIN) // COLUMNS
    cell_h = (PAGE[1] - 2 * MARGIN) // ROWS
    fonts = (_font(26), _font(18))
    result = []
    for start in range(0, len(records), PER_PAGE):
        page = Image.new("1", PAGE, 1)
        draw = ImageDraw.Draw(page)
        for i, record in enumerate(records[start : start + PER_PAGE]):
            row, column = divmod(i, COLUMNS)
            left, top = MARGIN + column * cell_w, MARGIN + row * cell_h
            _label(page, draw, record, left, top, cell_w, cell_h, fonts)
        result.append(page)
    return result


def sheet(records, fmt: str = "pdf") -> bytes:
    """The labels of ``records`` (with ``device_type`` loaded) as a PDF or a PNG file."""
    records = list(records)
    if fmt not in FORMATS:
        raise LabelError(f"Choose a format among {', '.join(FORMATS)}.")
    if not records:
        raise LabelError(NONE)
    if len(records) > MAX_LABELS:
        raise LabelError(TOO_MANY)
    if fmt == "png" and len(records) > PER_PAGE:
        raise LabelError(PNG_ONE_PAGE)
    first, *rest = pages(records)
    out = io.BytesIO()
    if fmt == "pdf":
        first.save(out, "PDF", save_all=True, append_images=rest, resolution=DPI, title="QR labels")
    else:
        first.save(out, "PNG", optimize=True, dpi=(DPI, DPI))
    return out.getvalue()
