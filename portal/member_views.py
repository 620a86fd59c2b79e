"""Members of the current organization: list, invite or create, change role groups, remove;
and the invitee's side: the invitations addressed to the logged-in user.

Only members whom ``permissions`` allows ``manage_members`` reach the member pages.
Every lookup goes through the current organization's scope, so another organization's
membership id is a 404. The changes themselves — and their audit entries, and the
"last Administrator" rule — are ``portal.membership``'s.
"""

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View
from django.views.generic import ListView

from portal import membership as rules
from portal import permissions, tenancy
from portal.forms import CreateMemberForm, InviteMemberForm, MemberRolesForm, RemoveMemberForm
from portal.models import Invitation, Membership


class MemberMixin(tenancy.OrganizationRequiredMixin):
    required_rule = "manage_members"

    def memberships(self):
        return self.scoped(Membership).select_related("user", "organization")

    def get_membership(self):
        return get_object_or_404(self.memberships(), pk=self.kwargs["pk"])

    def next_page(self, membership, removed=False):
        """The member list, or the dashboard when the user just gave up managing members."""
        if membership.user_id == self.request.user.pk and (
            removed or not permissions.can_manage_members(membership.roles)
        ):
            return redirect("dashboard")
        return redirect("members")


class MemberListView(MemberMixin, ListView):
    template_name = "portal/members.html"
    context_object_name = "memberships"
    paginate_by = 50

    def get_queryset(self):
        return self.memberships().order_by("user__username", "pk")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["invitations"] = (
            self.scoped(Invitation).pending().select_related("invited_by").order_by("username")
        )
        return context


class MemberAddView(MemberMixin, View):
    """Invite an existing account (its owner accepts), or create a new one in here."""

    template_name = "portal/members_add.html"

    def forms(self, mode=None, data=None):
        org = self.organization
        return (
            InviteMemberForm(data if mode == "invite" else None, prefix="invite", organization=org),
            CreateMemberForm(data if mode == "new" else None, prefix="new", organization=org),
        )

    def render_forms(self, invite, new, status=200):
        context = {"invite_form": invite, "new_form": new}
        return render(self.request, self.template_name, context, status=status)

    def get(self, request):
        return self.render_forms(*self.forms())

    def post(self, request):
        mode = "new" if request.POST.get("mode") == "new" else "invite"
        invite, new = self.forms(mode, request.POST)
        form = new if mode == "new" else invite
        if not form.is_valid():
            return self.render_forms(invite, new)
        roles = form.cleaned_data["roles"]
        if mode == "invite":
            invitation = rules.invite(
                request.user, self.organization, form.cleaned_data["username"], roles
            )
            messages.success(
                request,
                f"Invitation recorded. If an account named {invitation.username} exists, its "
                f"owner sees the invitation on their Invitations page after logging in and "
                f"can accept it until {invitation.expires_at:%Y-%m-%d}.",
            )
            return redirect("members")
        try:
            with transaction.atomic():
                user = form.save()
                rules.add_new_user(request.user, self.organization, user, roles)
        except IntegrityError:
            # Another administrator took the username just now.
            form.add_error("username", "This username was taken a moment ago; choose another.")
            return self.render_forms(invite, new)
        messages.success(request, f"{user.get_username()} is now a member of {self.organization}.")
        return redirect("members")


class InvitationRevokeView(MemberMixin, View):
    def post(self, request, pk):
        invitation = get_object_or_404(self.scoped(Invitation), pk=pk)
        if rules.revoke_invitation(request.user, invitation):
            messages.success(request, f"The invitation of {invitation.username} is withdrawn.")
        else:
            messages.info(request, "That invitation was no longer open.")
        return redirect("members")


class MemberEditView(MemberMixin, View):
    template_name = "portal/members_edit.html"

    def render_form(self, membership, form):
        return render(self.request, self.template_name, {"membership": membership, "form": form})

    def get(self, request, pk):
        membership = self.get_membership()
        form = MemberRolesForm(membership=membership, acting_user=request.user)
        return self.render_form(membership, form)

    def post(self, request, pk):
        membership = self.get_membership()
        form = MemberRolesForm(request.POST, membership=membership, acting_user=request.user)
        if not form.is_valid():
            return self.render_form(membership, form)
        try:
            changed = rules.change_roles(request.user, membership, form.cleaned_data["roles"])
        except rules.Refused as refusal:
            form.add_error("roles", str(refusal))
            return self.render_form(membership, form)
        name = membership.user.get_username()
        if changed:
            messages.success(request, f"Updated {name}'s role groups.")
        else:
            messages.info(request, f"{name}'s role groups are unchanged.")
        return self.next_page(membership)


class MemberRemoveView(MemberMixin, View):
    template_name = "portal/members_remove.html"

    def render_form(self, membership, form):
        return render(self.request, self.template_name, {"membership": membership, "form": form})

    def get(self, request, pk):
        membership = self.get_membership()
        form = RemoveMemberForm({}, membership=membership, acting_user=request.user)
        form.is_valid()  # show the last-Administrator refusal before anyone clicks
        return self.render_form(membership, form)

    def post(self, request, pk):
        membership = self.get_membership()
        form = RemoveMemberForm(request.POST, membership=membership, acting_user=request.user)
        if not form.is_valid():
            return self.render_form(membership, form)
        try:
            rules.remove(request.user, membership)
        except rules.Refused as refusal:
            form.add_error(None, str(refusal))
            return self.render_form(membership, form)
        username = membership.user.get_username()
        messages.success(request, f"{username} is no longer a member of {self.organization}.")
        return self.next_page(membership, removed=True)


class InvitationListView(LoginRequiredMixin, View):
    """The logged-in user's open invitations: accept or decline each."""

    template_name = "portal/invitations.html"

    def get(self, request):
        invitations = (
            Invitation.objects.for_invitee(request.user)
            .select_related("organization", "invited_by")
            .order_by("created_at")
            if rules.may_join(request.user)
            else Invitation.objects.none()
        )
        context = {"invitations": invitations, "may_join": rules.may_join(request.user)}
        return render(request, self.template_name, context)

    def post(self, request):
        try:
            invitation_id = int(request.POST.get("invitation", ""))
        except ValueError:
            messages.error(request, "Choose an invitation.")
            return redirect("invitations")
        try:
            if request.POST.get("answer") == "accept":
                membership = rules.accept(request.user, invitation_id)
                messages.success(
                    request,
                    f"You are now a member of {membership.organization}. Switch to it with "
                    "the organization menu at the top.",
                )
            else:
                rules.decline(request.user, invitation_id)
                messages.info(request, "Invitation declined.")
        except rules.Refused as refusal:
            messages.error(request, str(refusal))
        return redirect("invitations")
