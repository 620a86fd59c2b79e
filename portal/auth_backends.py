"""Login throttling: every password check of the portal goes through django-axes.

The portal's login page, the admin's and the API's token login all call
``authenticate(request, ...)``, and ``LoginThrottleBackend`` runs first: once a username
has failed ``AXES_FAILURE_LIMIT`` times from one address, it refuses that pair for
``AXES_COOLOFF_TIME`` even with the right password (the page says so, with status 429).
Unlock early with ``manage.py axes_reset_username NAME``.

A call without a request (a management command, the test client's ``login``) has no
remote party to throttle; axes would raise for it, this backend steps aside.
"""

from axes.backends import AxesStandaloneBackend
from django.conf import settings


class LoginThrottleBackend(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request) -> str:
    """The address a login attempt is counted against.

    ``REMOTE_ADDR``, or — behind a reverse proxy that sets it — the last address of
    ``settings.CLIENT_IP_HEADER`` (e.g. ``HTTP_X_FORWARDED_FOR``): the one the proxy
    itself saw, which a client cannot forge.
    """
    header = settings.CLIENT_IP_HEADER
    if header and (forwarded := request.META.get(header, "")):
        return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def lockout_response(request, original_response=None, credentials=None):
    """What a locked-out login gets: JSON for the API, the login page's sibling otherwise."""
    from django.http import JsonResponse
    from django.shortcuts import render

    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    message = (
        f"Too many failed logins for this username from your address: try again in "
        f"{minutes} minutes."
    )
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=429)
    return render(request, "registration/locked_out.html", {"message": message}, status=429)
