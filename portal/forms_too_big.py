"""A form posted with more text than Django accepts gets its page's own error, not a bare 400.

Django refuses to read more than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MB) of form fields
(files are streamed to disk and do not count). The first to read the body is the CSRF
middleware, so the refusal happens before any view runs and the user sees Django's bare
"Bad Request" page — after pasting a big enrollment list, say.

A view that can explain it sets ``handles_too_big_forms = True``. For such a view this
middleware (placed before ``CsrfViewMiddleware``) reads the body first; when it is too
big, the view is called with an empty ``request.POST`` and ``request.form_too_big`` set
to the limit in bytes, and it answers with its form and a sentence stating the limit.
Such a view must do nothing else with that request: it is not CSRF-checked, since the
token was in the body that could not be read.
"""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict


def limit_text(limit: int | None = None) -> str:
    """The limit in words: "2.5 MB"."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE if limit is None else limit
    return f"{limit / 1024 / 1024:.1f}".rstrip("0").rstrip(".") + " MB"


class TooBigFormMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view, args, kwargs):
        view_class = getattr(view, "view_class", view)
        if request.method != "POST" or not getattr(view_class, "handles_too_big_forms", False):
            return None
        try:
            request.POST  # noqa: B018  (parses the body, as CSRF would)
        except RequestDataTooBig:
            request._post, request._files = QueryDict(), MultiValueDict()
            request.form_too_big = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return view(request, *args, **kwargs)
        return None
