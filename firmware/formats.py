"""Image file formats: what the content of an image with a given extension must look like.

A device type says which extensions it accepts (``DeviceType.image_extensions``); this
module says how each extension's content is checked. Checking streams: a checker is fed
the file chunk by chunk while it is hashed, so no image is ever held in memory whole.

What is known about each format, and therefore checked:

* ``.fgfw`` — Fleetgate's own image for simulated devices (the demo and the benchmarks).
  Its header is defined here (``FGFW_HEADER``) and checked completely: magic, header
  version, the version text, the payload length and the payload's CRC-32. The header
  carries the image's version, so an upload can leave the version empty.
* ``.hex`` (and ``.nxe``, ``.nei``: Neuron images in the same encoding) — Intel HEX,
  a text format: every record is ``:`` + byte count + address + type + data + checksum,
  and the file ends with the end-of-file record. Every record's checksum is verified.
* LON images ``.apb``, ``.ndl``, ``.nx``, ``.nxi`` — the vendor's formats for Neuron
  application and firmware images (.APB: the binary application image network tools
  download; .NDL: NodeLoad's manufacturing-time load file; .NX/.NXI: Neuron firmware
  images). Their layouts are not published, so no header is checked: only the
  extension, the size and the SHA-256. The gateway's link driver (which speaks the
  vendor protocol) is where a malformed LON image is refused.
* ``.bin``, ``.iox``, ``.fw`` and anything else — raw binary or vendor-private: no
  known header, nothing to check beyond extension, size and SHA-256.
"""

import struct
import zlib
from dataclasses import dataclass

CHUNK = 256 * 1024


class FormatError(ValueError):
    """The content is not what the extension promises; the message is for people."""


class Checker:
    """Fed the file in chunks; ``finish`` raises ``FormatError`` or returns what it read."""

    def feed(self, chunk: bytes) -> None:
        pass

    def finish(self) -> dict:
        return {}


@dataclass(frozen=True)
class ImageFormat:
    name: str
    extensions: tuple[str, ...]
    checked: str  # how the content is checked, in words (shown in the widget's help)
    checker: type[Checker] = Checker


# -- Fleetgate's simulated-device image -----------------------------------------------

FGFW_MAGIC = b"FGFW"
FGFW_HEADER_VERSION = 1
FGFW_HEADER = struct.Struct(">4sBB32s2xQI12x")
"""The 64-byte header of a ``.fgfw`` image, big-endian:

offset  size  field
0       4     magic ``FGFW``
4       1     header version, 1
5       1     length of the version text, 1–32
6       32    version text: printable ASCII, padded with NUL bytes
38      2     reserved, zero
40      8     payload length in bytes (the file's size minus 64)
48      4     CRC-32 (zlib) of the payload
52      12    reserved, zero
64      …     payload
"""


def fgfw_image(version: str, payload: bytes) -> bytes:
    """A ``.fgfw`` image of ``payload`` (the demo's and the tests' images)."""
    text = version.encode("ascii")
    if not 1 <= len(text) <= 32 or not version.isprintable():
        raise ValueError("version: 1–32 printable ASCII characters")
    header = FGFW_HEADER.pack(
        FGFW_MAGIC, FGFW_HEADER_VERSION, len(text), text, len(payload), zlib.crc32(payload)
    )
    return header + payload


NOT_FGFW = "This is not a Fleetgate image: it does not start with “FGFW”."


class FgfwChecker(Checker):
    def __init__(self):
        self.head = b""
        self.header = None
        self.payload = 0
        self.crc = 0

    def feed(self, chunk: bytes) -> None:
        if self.header is None:
            self.head += chunk
            if not self.head.startswith(FGFW_MAGIC[: len(self.head)]):
                raise FormatError(NOT_FGFW)
            if len(self.head) < FGFW_HEADER.size:
                return
            chunk = self.head[FGFW_HEADER.size :]
            self.header = self._parse(self.head[: FGFW_HEADER.size])
        self.payload += len(chunk)
        self.crc = zlib.crc32(chunk, self.crc)

    @staticmethod
    def _parse(raw: bytes) -> dict:
        magic, header_version, length, text, payload, crc = FGFW_HEADER.unpack(raw)
        if magic != FGFW_MAGIC:
            raise FormatError(NOT_FGFW)
        if header_version != FGFW_HEADER_VERSION:
            raise FormatError(f"Unknown Fleetgate image header version {header_version}.")
        version = text[:length]
        if not 1 <= length <= 32 or text[length:].strip(b"\0"):
            raise FormatError("The image header's version field is malformed.")
        try:
            version = version.decode("ascii")
        except UnicodeDecodeError:
            raise FormatError("The image header's version is not ASCII text.") from None
        if not version.isprintable() or not version.strip():
            raise FormatError("The image header's version is not printable text.")
        return {"version": version.strip(), "payload": payload, "crc": crc}

    def finish(self) -> dict:
        if self.header is None:
            if len(self.head) < len(FGFW_MAGIC):
                raise FormatError(NOT_FGFW)
            raise FormatError(
                f"The file is shorter than a Fleetgate image header ({FGFW_HEADER.size} bytes)."
            )
        if self.payload != self.header["payload"]:
            raise FormatError(
                f"The image header announces {self.header['payload']:,} bytes of payload, "
                f"the file has {self.payload:,}: it is cut off or padded."
            )
        if self.crc != self.header["crc"]:
            raise FormatError("The image's payload does not match its CRC-32: it is damaged.")
        return {"version": self.header["version"]}


# -- Intel HEX ----------------------------------------------------------------------

HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
MAX_HEX_LINE = 1 + 2 * (1 + 2 + 1 + 255 + 1) + 2  # the longest record, with CR LF


class IntelHexChecker(Checker):
    def __init__(self):
        self.rest = b""
        self.line = 0
        self.ended = False

    def feed(self, chunk: bytes) -> None:
        lines = (self.rest + chunk).split(b"\n")
        self.rest = lines.pop()
        if len(self.rest) > MAX_HEX_LINE:
            raise FormatError(f"Not Intel HEX: line {self.line + 1} is too long.")
        for line in lines:
            self._record(line)

    def _record(self, raw: bytes) -> None:
        self.line += 1
        line = raw.strip()
        if not line:
            return
        where = f"line {self.line}"
        if self.ended:
            raise FormatError(f"Not Intel HEX: {where} follows the end-of-file record.")
        body = line[1:]
        if line[:1] != b":" or len(body) < 10 or len(body) % 2 or not set(body) <= HEX_DIGITS:
            raise FormatError(f"Not Intel HEX: {where} is not a “:…” record of hex digits.")
        data = bytes.fromhex(body.decode("ascii"))
        if data[0] != len(data) - 5:
            raise FormatError(f"Not Intel HEX: {where} has the wrong byte count.")
        if sum(data) & 0xFF:
            raise FormatError(f"Not Intel HEX: {where} fails its checksum.")
        if data[3] > 5:
            raise FormatError(f"Not Intel HEX: {where} has an unknown record type.")
        self.ended = data[3] == 1

    def finish(self) -> dict:
        if self.rest:
            self._record(self.rest)
            self.rest = b""
        if not self.ended:
            raise FormatError("Not Intel HEX: the end-of-file record is missing (cut off?).")
        return {}


# -- the registry --------------------------------------------------------------------

NOT_PUBLISHED = "no published header: extension, size and SHA-256 are checked"
FORMATS = (
    ImageFormat(
        "Fleetgate image",
        (".fgfw",),
        "the FGFW header, version, length and CRC-32",
        FgfwChecker,
    ),
    ImageFormat("Intel HEX", (".hex", ".nxe", ".nei"), "every Intel HEX record", IntelHexChecker),
    ImageFormat("LON application image", (".apb",), NOT_PUBLISHED),
    ImageFormat("LON NodeLoad image", (".ndl",), NOT_PUBLISHED),
    ImageFormat("Neuron firmware image", (".nx", ".nxi"), NOT_PUBLISHED),
    ImageFormat("Binary image", (".bin", ".iox", ".fw"), "raw binary: " + NOT_PUBLISHED),
)
UNKNOWN = ImageFormat("Image", (), NOT_PUBLISHED)
_BY_EXTENSION = {ext: fmt for fmt in FORMATS for ext in fmt.extensions}


def extension(filename: str) -> str:
    """The lower-case extension with its dot ("" when there is none)."""
    stem, dot, ext = filename.rpartition(".")
    return f".{ext.lower()}" if dot and stem else ""


def for_filename(filename: str) -> ImageFormat:
    return _BY_EXTENSION.get(extension(filename), UNKNOWN)
