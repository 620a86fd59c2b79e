"""Members of the current organization: list, add, change role groups, remove.

Only members whom ``permissions`` allows ``manage_members`` get here. Every lookup goes
through the current organization's scope, so another organization's membership id is
a 404. Changes that could lose the last Administrator run under the organization's row
lock and re-check inside it; every change writes one audit entry.
"""

from contextlib import contextmanager

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View
from django.views.generic import ListView

from portal import audit, permissions, tenancy
from portal.forms import AddExistingMemberForm, CreateMemberForm, MemberRolesForm, RemoveMemberForm
from portal.models import Membership, Organization

ROLE_FIELDS = list(Membership.ROLE_FIELDS.values())


@contextmanager
def locked_organization(organization):
    """One transaction holding the organization's row lock: membership changes queue up.

    On SQLite the IMMEDIATE transaction mode already serializes writers; on PostgreSQL
    the ``SELECT … FOR UPDATE`` does.
    """
    with transaction.atomic():
        Organization.objects.select_for_update().get(pk=organization.pk)
        yield


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


class MemberAddView(MemberMixin, View):
    template_name = "portal/members_add.html"

    def forms(self, mode=None, data=None):
        org = self.organization
        return (
            AddExistingMemberForm(
                data if mode == "existing" else None, prefix="existing", organization=org
            ),
            CreateMemberForm(data if mode == "new" else None, prefix="new", organization=org),
        )

    def render_forms(self, existing, new, status=200):
        context = {"existing_form": existing, "new_form": new}
        return render(self.request, self.template_name, context, status=status)

    def get(self, request):
        return self.render_forms(*self.forms())

    def post(self, request):
        mode = "new" if request.POST.get("mode") == "new" else "existing"
        existing, new = self.forms(mode, request.POST)
        form = new if mode == "new" else existing
        if not form.is_valid():
            return self.render_forms(existing, new)
        try:
            with transaction.atomic():
                user = form.save() if mode == "new" else form.user
                membership = Membership(user=user, organization=self.organization)
                membership.set_roles(form.cleaned_data["roles"])
                membership.save()
                audit.record(
                    self.organization,
                    request.user,
                    "member.add",
                    [membership],
                    username=user.get_username(),
                    roles=sorted(membership.roles),
                    created_user=mode == "new",
                )
        except IntegrityError:
            # Another administrator added the same person (or took the username) just now.
            form.add_error(
                "username", "This user was added or created a moment ago; check the member list."
            )
            return self.render_forms(existing, new)
        messages.success(request, f"{user.get_username()} is now a member of {self.organization}.")
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
        with locked_organization(self.organization):
            membership = self.get_membership()  # re-read under the lock
            form = MemberRolesForm(request.POST, membership=membership, acting_user=request.user)
            if not form.is_valid():
                return self.render_form(membership, form)
            before = sorted(membership.roles)
            membership.set_roles(form.cleaned_data["roles"])
            after = sorted(membership.roles)
            if before != after:
                membership.save(update_fields=ROLE_FIELDS)
                audit.record(
                    self.organization,
                    request.user,
                    "member.change_roles",
                    [membership],
                    username=membership.user.get_username(),
                    before=before,
                    after=after,
                )
        if before == after:
            messages.info(request, f"{membership.user.get_username()}'s role groups are unchanged.")
        else:
            messages.success(request, f"Updated {membership.user.get_username()}'s role groups.")
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
        with locked_organization(self.organization):
            membership = self.get_membership()
            form = RemoveMemberForm(request.POST, membership=membership, acting_user=request.user)
            if not form.is_valid():
                return self.render_form(membership, form)
            username = membership.user.get_username()
            audit.record(
                self.organization,
                request.user,
                "member.remove",
                [membership],
                username=username,
                roles=sorted(membership.roles),
            )
            membership.delete()
        messages.success(request, f"{username} is no longer a member of {self.organization}.")
        return self.next_page(membership, removed=True)
