"""Download tokens: a gateway's permission to fetch one image for one operation, for a while.

A ``load_image`` command carries ``token`` (docs/gateway-protocol.md §7, §10); the
gateway sends it back as ``Authorization: Bearer <token>``. The token is

    <image id>.<operation wire id>.<expiry, Unix seconds>:<signature>

signed with ``django.core.signing.Signer`` (HMAC-SHA256 keyed from ``SECRET_KEY``, with
``SECRET_KEY_FALLBACKS`` accepted after a key rotation) under a salt of its own, so no
other signed value of the portal can pass for one. Checking it needs no database: the
endpoint's only read is the image row it serves. That makes a token a bearer credential
until it expires — it names one image and one operation (a retry gets a new wire id and
a new token) and lives ``settings.FIRMWARE["DOWNLOAD_TOKEN_TTL_S"]`` by default.
"""

import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core import signing
from django.urls import reverse

SALT = "fleetgate.firmware.download"
MAX_TOKEN = 512  # the protocol's limit for ``token``


class TokenInvalid(Exception):
    """Malformed or not signed by this portal (HTTP 401)."""


class TokenExpired(Exception):
    """Genuine, but its time is over (HTTP 410)."""


@dataclass(frozen=True)
class Grant:
    image_id: int
    op: str  # the operation's wire id
    expires: int  # Unix seconds


def _signer():
    return signing.Signer(salt=SALT)


def issue(image_id: int, op: str, expires_at: datetime | None = None) -> str:
    """A token for operation ``op`` (its wire id) to fetch image ``image_id``."""
    if not op or "." in op or ":" in op:
        raise ValueError("op: an operation wire id, without '.' or ':'")
    if expires_at is None:
        expires = int(time.time() + settings.FIRMWARE["DOWNLOAD_TOKEN_TTL_S"])
    else:
        expires = int(expires_at.timestamp())
    token = _signer().sign(f"{int(image_id)}.{op}.{expires}")
    if len(token) > MAX_TOKEN:
        raise ValueError("the token would exceed the protocol's 512 characters")
    return token


def verify(token: str, now: float | None = None) -> Grant:
    """The grant a token carries; raises ``TokenInvalid`` or ``TokenExpired``."""
    if not token or len(token) > MAX_TOKEN:
        raise TokenInvalid
    try:
        value = _signer().unsign(token)
    except signing.BadSignature:
        raise TokenInvalid from None
    try:
        image_id, op, expires = value.split(".")
        grant = Grant(int(image_id), op, int(expires))
    except ValueError:  # signed by us, but not a download token's shape
        raise TokenInvalid from None
    if grant.expires <= (time.time() if now is None else now):
        raise TokenExpired
    return grant


def download_url(image_id: int) -> str:
    """Where gateways fetch an image: the portal's public address + the endpoint."""
    path = reverse("firmware:download", args=[image_id])
    return settings.FIRMWARE["PUBLIC_URL"] + path


def load_image_params(image, op: str, expires_at: datetime | None = None) -> dict:
    """The ``params`` of a ``load_image`` command for ``image`` (protocol §7)."""
    return {
        "url": download_url(image.pk),
        "sha256": image.sha256,
        "size": image.size,
        "token": issue(image.pk, op, expires_at),
        "version": image.version,
        "name": image.filename[:255],
    }
