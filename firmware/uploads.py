"""Receiving an image upload: the size cap while the body streams, and the true file name.

Two things Django's defaults do not give an image upload:

* **The cap is enforced as the bytes arrive.** ``ImageUploadHandler`` goes first in the
  request's handler chain and skips the file the moment it passes
  ``settings.FIRMWARE["MAX_IMAGE_BYTES"]``: the rest of the body is read and dropped,
  the temporary file is closed (deleted), and the form reports the limit. Without it a
  1 GB upload would be spooled to disk before anything could refuse it.
* **The name the client sent.** Django's multipart parser silently strips folder parts
  and control characters from upload names; Fleetgate refuses such names instead
  (``filename_problem``), so ``ImageMultiPartParser`` hands the raw name to the handler.

Both must be in place before anything reads ``request.POST``/``FILES`` — CSRF checking
does — so views call ``prepare(request)`` first (with ``csrf_exempt`` outside and
``csrf_protect`` inside, as Django's upload-handler documentation describes); the API's
viewset calls it before authentication, and parses with ``ImageApiParser``.
"""

import html
import unicodedata

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from rest_framework.exceptions import ParseError
from rest_framework.parsers import DataAndFiles
from rest_framework.parsers import MultiPartParser as DrfMultiPartParser

MAX_NAME = 200


def max_image_bytes() -> int:
    return settings.FIRMWARE["MAX_IMAGE_BYTES"]


def mib(n: int) -> str:
    """A byte count for people: "64 MiB", "1.5 MiB", "800 KiB", "12 bytes"."""
    if n >= 2**20:
        return f"{n / 2**20:.1f}".removesuffix(".0") + " MiB"
    if n >= 2**10:
        return f"{n / 2**10:.1f}".removesuffix(".0") + " KiB"
    return f"{n} byte{'s' if n != 1 else ''}"


def too_large_message(limit: int | None = None) -> str:
    return f"The file is larger than the {mib(limit or max_image_bytes())} limit for images."


def filename_problem(name: str) -> str | None:
    """Why ``name`` cannot name an image, or None. Names are plain: no folders, no control
    characters, not hidden, not too long."""
    if not name or not name.strip():
        return "The file has no name."
    if "/" in name or "\\" in name:
        return "The file name must not contain a folder path (“/” or “\\”)."
    if any(unicodedata.category(c).startswith("C") for c in name):
        return "The file name contains control characters."
    if name.startswith(".") or name != name.strip():
        return "The file name must not start with a dot or a space, nor end with a space."
    if len(name) > MAX_NAME:
        return f"The file name is longer than {MAX_NAME} characters."
    return None


class ImageUploadHandler(FileUploadHandler):
    """First in the chain: counts each file's bytes, skips a file past the cap, and
    keeps the name each file field was sent with (``raw_names``)."""

    def __init__(self, request=None, max_bytes: int | None = None):
        super().__init__(request)
        self.max_bytes = max_image_bytes() if max_bytes is None else max_bytes
        self.too_large: set[str] = set()  # fields whose file passed the cap
        self.raw_names: dict[str, str] = {}
        self.dropped_name = None  # a name Django's parser refused outright (".." etc.)
        self.pending_name = None

    def new_file(self, field_name, file_name, *args, **kwargs):
        super().new_file(field_name, file_name, *args, **kwargs)
        self.raw_names[field_name] = self.pending_name or file_name
        self.pending_name = None

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > self.max_bytes:
            self.too_large.add(self.field_name)
            raise SkipFile  # the parser drops the rest; later handlers close their files
        return raw_data

    def file_complete(self, file_size):
        return None  # the next handler (memory or temporary file) makes the file


class ImageMultiPartParser(MultiPartParser):
    """Django's parser, telling ``ImageUploadHandler`` each name before sanitising it."""

    def sanitize_file_name(self, file_name):
        raw = html.unescape(file_name)
        sanitized = super().sanitize_file_name(file_name)
        for handler in self._upload_handlers:
            if isinstance(handler, ImageUploadHandler):
                handler.pending_name = raw
                if sanitized is None:
                    handler.dropped_name = raw
        return sanitized


def prepare(request) -> ImageUploadHandler:
    """Put the cap and the raw-name parser on ``request`` before its body is read."""
    handler = ImageUploadHandler(request)
    request.upload_handlers.insert(0, handler)
    request.multipart_parser_class = ImageMultiPartParser
    request.image_upload = handler
    return handler


class ImageApiParser(DrfMultiPartParser):
    """DRF's multipart parsing, through ``ImageMultiPartParser`` (token requests; session
    requests were parsed by the CSRF check already, with the same parser)."""

    def parse(self, stream, media_type=None, parser_context=None):
        context = parser_context or {}
        request = context["request"]
        meta = {**request.META, "CONTENT_TYPE": media_type}
        encoding = context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            parser = ImageMultiPartParser(meta, stream, request.upload_handlers, encoding)
            data, files = parser.parse()
        except MultiPartParserError as error:
            raise ParseError(f"Multipart form parse error: {error}") from error
        return DataAndFiles(data, files)
