"""What every app's htmx views share: partial-or-page rendering and the dialog base.

A widget view renders a fragment for an htmx swap and the whole page otherwise (one
URL for both, so the response varies on ``HX-Request``). A dialog (``DialogView``) is
a small form in a modal on the dashboard, or a page of its own without JavaScript;
its templates are ``portal/dialogs/``, and each view brings only its body.
"""

import json
from urllib.parse import urlsplit

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme

from portal.errors import Conflict
from portal.tenancy import OrganizationRequiredMixin

# The event the widgets (and the device page) listen to, to re-render after a change;
# static/js/fleetgate.js shows its ``message``. (Named for the first widget that used it.)
GROUPS_CHANGED = "groupsChanged"


def wants_partial(request):
    """An htmx swap gets a fragment; a history restore or a plain visit gets the page."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def render_varying(request, template, context, status=200):
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ("HX-Request",))  # fragment and page share one URL
    return response


def render_widget(request, context, *, page, widget, results="", results_id=""):
    """A widget's three renderings from one URL: its results alone (an htmx swap of the
    element ``results_id``), the whole widget (the dashboard's first load), or ``page``
    (a plain visit, a history restore)."""
    if not wants_partial(request):
        template = page
    elif results and request.htmx.target == results_id:
        template = results
    else:
        template = widget
    return render_varying(request, template, context)


class WidgetMixin:
    """A widget's view: names its templates once, answers with ``render_widget(context)``."""

    page_template = ""  # the standalone page
    widget_template = ""  # the widget's body, for the dashboard
    results_template = ""  # only the results, swapped into the element ``results_id``
    results_id = ""

    def render_widget(self, context):
        return render_widget(
            self.request,
            context,
            page=self.page_template,
            widget=self.widget_template,
            results=self.results_template,
            results_id=self.results_id,
        )


def on_own_page(request, list_url) -> bool:
    """True on a widget's standalone page, where its links also update the address bar."""
    if not wants_partial(request):
        return True
    return urlsplit(request.htmx.current_url or "").path == list_url


def safe_next(request, default="dashboard"):
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, {request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse(default)


class ConflictMixin:
    """A view whose work a service may refuse as a whole (``portal.errors.Conflict``: over
    capacity, nothing to do). Nothing changed; ``refused`` answers with the reason.

    Views that show a form keep it in ``self.form`` before calling the service: the
    default answer is that form again, with the refusal above its fields.
    """

    refusal_note = ""  # said before the refusal's own sentence ("Nothing was enrolled.")

    def dispatch(self, request, *args, **kwargs):
        try:
            return super().dispatch(request, *args, **kwargs)
        except Conflict as refusal:
            return self.refused(refusal)

    def refusal_message(self, refusal) -> str:
        return f"{self.refusal_note} {refusal}".strip()

    def refused(self, refusal):
        raise NotImplementedError


class DialogView(ConflictMixin, OrganizationRequiredMixin):
    """A small form shown in a modal dialog on the dashboard, or as a page without htmx.

    Success answers htmx with 204 and a ``groupsChanged`` event carrying the message
    (the widgets re-render themselves); a plain POST is redirected back with a message.
    """

    required_rule = None  # a dialog changes something: each one names its rule
    title = ""
    body_template = ""
    submit_label = "Save"
    danger = False

    def render_dialog(self, **context):
        context.setdefault("title", self.title)
        context.setdefault("submit_label", self.submit_label)
        context.setdefault("danger", self.danger)
        context["body_template"] = self.body_template
        context["action"] = self.request.path
        context["next"] = safe_next(self.request)
        template = (
            "portal/dialogs/dialog.html"
            if wants_partial(self.request)
            else "portal/dialogs/page.html"
        )
        return render_varying(self.request, template, context)

    def refused(self, refusal):
        """The dialog's form again with the reason, or (no form) the reason as the outcome."""
        form = getattr(self, "form", None)
        if form is None:
            return self.done(self.refusal_message(refusal))
        form.add_error(None, self.refusal_message(refusal))
        return self.render_dialog(form=form)

    def done(self, message):
        if self.request.htmx:
            response = HttpResponse(status=204)
            response["HX-Trigger"] = json.dumps({GROUPS_CHANGED: {"message": message}})
            return response
        messages.success(self.request, message)
        return redirect(safe_next(self.request))
