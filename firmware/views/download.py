"""The image endpoint gateways download from (docs/gateway-protocol.md §10).

``GET /firmware/images/<id>/download/`` with ``Authorization: Bearer <token>``
(``firmware.tokens``). It writes nothing to the database and reads one row — the image's
storage name, size and SHA-256 — so a rollout's downloads cost the portal one indexed
read each, however many gateways fetch at once. The answers:

* 200 the whole image; 206 one byte range (``Range: bytes=N-``, ``bytes=N-M`` or
  ``bytes=-N``), with ``Content-Range``; a gateway resumes a cut download this way, as
  often as it is cut. Several ranges in one request are not offered: the whole image
  is sent (RFC 9110 allows a server to ignore ``Range``), as is a ``Range`` in another
  unit or one that ``If-Range`` (the image's ETag, its SHA-256) no longer matches.
* 416 a range that is malformed or starts past the end, with ``Content-Range: bytes */size``.
* 401 no bearer token, or one this portal did not sign (``WWW-Authenticate: Bearer``);
  410 a genuine token whose time is over; 403 a genuine token for another image;
  404 no such image (deleted), or its file missing from storage. The gateway ends the
  operation on each of these (``download_failed``) and retries anything else.

The file is read through the storage API (never a local path) in 256 KiB chunks, and
streamed as an iterator of the kind the server wants: a plain one under WSGI, an async
one under ASGI (daphne), where Django would otherwise read a synchronous iterator into
memory whole before sending it.
"""

import asyncio
import logging
import re

from django.http import HttpResponse, StreamingHttpResponse
from django.views import View

from firmware import tokens
from firmware.formats import CHUNK
from firmware.models import FirmwareImage, firmware_storage

log = logging.getLogger(__name__)
RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class Unsatisfiable(Exception):
    pass


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``bytes`` range, None to send the whole image;
    raises ``Unsatisfiable`` for a malformed or out-of-bounds range."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    match = RANGE.match(spec)
    if not match or not (match[1] or match[2]):
        raise Unsatisfiable
    if not match[1]:  # the last N bytes
        suffix = int(match[2])
        if suffix == 0:
            raise Unsatisfiable
        return max(0, size - suffix), size - 1
    first = int(match[1])
    last = int(match[2]) if match[2] else size - 1
    if first >= size or last < first:
        raise Unsatisfiable
    return first, min(last, size - 1)


class FileRange:
    """``length`` bytes of a storage file from ``offset``, both sync- and async-iterable.

    Seeks when the storage's file can, else reads up to ``offset`` and drops it. Under
    ASGI each read runs in a worker thread, so the event loop never waits on storage."""

    def __init__(self, name: str, offset: int, length: int):
        self.name, self.offset, self.length = name, offset, length
        self.file = None

    def open(self) -> None:
        """Open now, in the view, so a file missing from storage is a 404, not a cut body."""
        self.file = firmware_storage().open(self.name, "rb")
        if not self.offset:
            return
        if getattr(self.file, "seekable", lambda: True)():
            self.file.seek(self.offset)
            return
        skip = self.offset
        while skip > 0:
            block = self.file.read(min(CHUNK, skip))
            if not block:
                break
            skip -= len(block)

    def _read(self, left: int) -> bytes:
        return self.file.read(min(CHUNK, left))

    def __iter__(self):
        left = self.length
        while left > 0:
            block = self._read(left)
            if not block:
                break
            left -= len(block)
            yield block

    async def __aiter__(self):
        left = self.length
        while left > 0:
            block = await asyncio.to_thread(self._read, left)
            if not block:
                break
            left -= len(block)
            yield block

    def close(self):
        if self.file is not None:
            self.file.close()


class RangeResponse(StreamingHttpResponse):
    """Iterates ``FileRange`` synchronously under WSGI and asynchronously under ASGI."""

    def __init__(self, stream: FileRange, **kwargs):
        super().__init__(stream, **kwargs)
        self.stream = stream

    def __aiter__(self):
        return aiter(self.stream)


def refusal(status: int, reason: str, grant=None) -> HttpResponse:
    """A refusal in plain text; logged (a gateway's failed download is worth a line),
    never written to the database."""
    log.info("firmware download refused (%s): %s %s", status, reason, grant or "")
    response = HttpResponse(reason + "\n", status=status, content_type="text/plain")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="fleetgate-firmware", error="invalid_token"'
    return response


def bearer_token(request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class DownloadView(View):
    """No session, no organization middleware data: the token is the only credential."""

    http_method_names = ["get"]

    def get(self, request, pk):
        token = bearer_token(request)
        if not token:
            return refusal(401, "A download token is required (Authorization: Bearer …).")
        try:
            grant = tokens.verify(token)
        except tokens.TokenInvalid:
            return refusal(401, "This download token is not valid.")
        except tokens.TokenExpired:
            return refusal(410, "This download token has expired; the operation is over.")
        if grant.image_id != pk:
            return refusal(403, "This download token is for another image.", grant)
        image = FirmwareImage.objects.filter(pk=pk).values("file", "size", "sha256").first()
        if image is None:
            return refusal(404, "No such image: it may have been deleted.", grant)
        return self.serve(request, image)

    def serve(self, request, image):
        size, etag = image["size"], f'"{image["sha256"]}"'
        first, last, status = 0, size - 1, 200
        header = request.headers.get("Range", "")
        if_range = request.headers.get("If-Range", "").strip()
        if header and (not if_range or if_range == etag):
            try:
                wanted = parse_range(header, size)
            except Unsatisfiable:
                response = refusal(416, "The requested range is not in this image.")
                response["Content-Range"] = f"bytes */{size}"
                return response
            if wanted:
                (first, last), status = wanted, 206
        stream = FileRange(image["file"], first, last - first + 1)
        try:
            stream.open()
        except OSError:  # FileNotFoundError, or the storage's own "not there"
            return refusal(404, "The image's file is missing from storage.")
        response = RangeResponse(stream, status=status)
        response["Content-Type"] = "application/octet-stream"
        response["Content-Length"] = str(stream.length)
        response["Accept-Ranges"] = "bytes"
        response["ETag"] = etag
        response["Cache-Control"] = "private, no-store"
        if status == 206:
            response["Content-Range"] = f"bytes {first}-{last}/{size}"
        return response
