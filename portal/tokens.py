"""REST API tokens: issued once, stored as a digest, expiring, revocable by their owner.

A token is ``fg_`` and 43 random URL-safe characters (256 bits). The database keeps its
SHA-256 digest and its first characters (to tell tokens apart in a list), never the
token: a copy of the database lets nobody call the API. A slow password hash is not
needed — nobody can guess 256 random bits — and SHA-256 lets a request find its token
with one indexed lookup.

Tokens expire (``settings.API_TOKEN_DAYS``, 90 by default) and their owner revokes them
on the portal's API tokens page or with ``manage.py api_token USER --revoke``. Tokens
issued before this scheme (40 hex characters) were moved over as digests by a
migration, so the installer app's existing tokens keep working until they expire.
"""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from portal.models import ApiToken

KEY_PREFIX = "fg_"
SHOWN_PREFIX = 10  # "fg_" and 7 characters: enough to recognise a token in a list
# Recording every use would write a row per API call; once a minute is enough to see
# whether a token is still in use.
LAST_USED_EVERY = timedelta(minutes=1)

INVALID = "Invalid token."
EXPIRED = "This token has expired; create a new one on the portal's API tokens page."


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue(user, *, name: str = "", days: int | None = None) -> tuple[ApiToken, str]:
    """A new token for ``user``: the row and the key, which is never available again."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    days = settings.API_TOKEN_DAYS if days is None else days
    token = ApiToken.objects.create(
        user=user,
        name=name,
        digest=digest(key),
        prefix=key[:SHOWN_PREFIX],
        expires_at=timezone.now() + timedelta(days=days),
    )
    return token, key


def active(user):
    """``user``'s tokens that still work, newest first."""
    return ApiToken.objects.filter(
        user=user, revoked_at__isnull=True, expires_at__gt=timezone.now()
    )


def revoke(user, token_ids=None) -> int:
    """Revoke ``user``'s tokens (these ids, or all); returns how many stopped working."""
    tokens = active(user)
    if token_ids is not None:
        tokens = tokens.filter(pk__in=token_ids)
    return tokens.update(revoked_at=timezone.now())


class HashedTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``, checked against the stored digests."""

    def authenticate_credentials(self, key):
        token = ApiToken.objects.select_related("user").filter(digest=digest(key)).first()
        if token is None or token.revoked_at is not None:
            raise exceptions.AuthenticationFailed(INVALID)
        now = timezone.now()
        if token.expires_at <= now:
            raise exceptions.AuthenticationFailed(EXPIRED)
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        if token.last_used_at is None or token.last_used_at < now - LAST_USED_EVERY:
            ApiToken.objects.filter(pk=token.pk).filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_EVERY)
            ).update(last_used_at=now)
        return token.user, token
