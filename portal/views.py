"""The dashboard shell, organization switching and the saved widget layout."""

import json

from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.generic import TemplateView

from portal import tenancy, widgets
from portal.models import DashboardLayout, Invitation


class DashboardView(tenancy.OrganizationRequiredMixin, TemplateView):
    template_name = "portal/dashboard.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        layout = DashboardLayout.objects.filter(user=self.request.user).first()
        saved = layout.layout if layout else {}
        context["cards"] = widgets.arrange(widgets.visible_widgets(self.roles), saved)
        # Invitations to other organizations wait for the user's answer (portal.membership).
        context["open_invitations"] = Invitation.objects.for_invitee(self.request.user).count()
        return context


class SwitchOrganizationView(LoginRequiredMixin, View):
    def post(self, request):
        try:
            organization_id = int(request.POST.get("organization", ""))
        except ValueError:
            return HttpResponseBadRequest("Choose an organization.")
        if not tenancy.switch_organization(request, organization_id):
            return HttpResponseBadRequest("You are not a member of that organization.")
        target = request.POST.get("next") or "dashboard"
        if not url_has_allowed_host_and_scheme(target, {request.get_host()}):
            target = "dashboard"
        return redirect(target)


class SaveLayoutView(tenancy.OrganizationRequiredMixin, View):
    """Remember which widgets a user keeps collapsed and in what order."""

    def post(self, request):
        try:
            data = json.loads(request.body or b"{}")
            order = [str(key)[:40] for key in data.get("order", [])][:50]
            collapsed = [str(key)[:40] for key in data.get("collapsed", [])][:50]
        except (ValueError, TypeError, AttributeError):
            return JsonResponse(
                {"error": "Send JSON with 'order' and 'collapsed' lists."}, status=400
            )
        DashboardLayout.objects.update_or_create(
            user=request.user, defaults={"layout": {"order": order, "collapsed": collapsed}}
        )
        return JsonResponse({"saved": True})
