"""The logged-in user's own REST API tokens: issue one (shown once), see them, revoke them."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache

from portal import tokens
from portal.validators import validate_name


class IssueTokenForm(forms.Form):
    name = forms.CharField(
        max_length=80,
        label="What it is for",
        help_text="e.g. “installer app on Maria's phone”; shown in the list below.",
        validators=[validate_name],
    )
    days = forms.IntegerField(
        label="Valid for (days)", min_value=1, max_value=365, initial=settings.API_TOKEN_DAYS
    )


@method_decorator(never_cache, name="dispatch")  # the new key is in the response
class TokenListView(LoginRequiredMixin, View):
    template_name = "portal/api_tokens.html"

    def page(self, form, key=None, status=200):
        context = {"form": form, "tokens": tokens.active(self.request.user), "new_key": key}
        return render(self.request, self.template_name, context, status=status)

    def get(self, request):
        return self.page(IssueTokenForm())

    def post(self, request):
        if "revoke" in request.POST:
            ids = None if request.POST["revoke"] == "all" else request.POST.getlist("revoke")
            try:
                ids = None if ids is None else [int(i) for i in ids]
            except ValueError:
                ids = []
            count = tokens.revoke(request.user, ids)
            messages.success(request, f"Revoked {count} token{'s' if count != 1 else ''}.")
            return redirect("api-tokens")
        form = IssueTokenForm(request.POST)
        if not form.is_valid():
            return self.page(form, status=400)
        _, key = tokens.issue(
            request.user, name=form.cleaned_data["name"], days=form.cleaned_data["days"]
        )
        return self.page(IssueTokenForm(), key=key)
