"""django-rq's queue pages, for superusers only.

They show every organization's jobs (arguments included) and can empty queues, so no
organization-scoped staff member may open them: each view is wrapped in
``superuser_required`` here, both at ``/admin/rq/`` and inside the admin (``portal.admin``).
"""

from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.utils.csp import CSP
from django_rq import stats_views
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

# django-rq's templates carry style attributes; its pages' policy allows inline styles.
RQ_CSP = {**settings.SECURE_CSP, "style-src": [CSP.SELF, CSP.UNSAFE_INLINE]}
# The two views that also accept ``Authorization: Bearer <RQ_API_TOKEN>`` themselves.
TOKEN_VIEWS = {stats_views.stats_json, stats_views.prometheus_metrics}


def superuser_required(view, bearer_passes=False):
    """Only active superusers; ``bearer_passes``: or a request with a bearer token, which
    the view itself checks against ``RQ_API_TOKEN`` (the metrics endpoints)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if bearer_passes and request.headers.get("Authorization", "").startswith("Bearer "):
            return view(request, *args, **kwargs)  # JSON: no page, no policy needed
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path(), "admin:login")
        if not (user.is_active and user.is_superuser):
            raise PermissionDenied("The job queues are for superusers only.")
        response = view(request, *args, **kwargs)
        response._csp_config = RQ_CSP
        return response

    return wrapped


app_name = "django_rq"


def guard(patterns):
    """Wrap every pattern's view in ``superuser_required`` (in place); returns them."""
    for pattern in patterns:
        bearer = pattern.callback in TOKEN_VIEWS
        pattern.callback = superuser_required(pattern.callback, bearer_passes=bearer)
    return patterns


urlpatterns = guard(get_api_urlpatterns() + get_admin_urlpatterns())
