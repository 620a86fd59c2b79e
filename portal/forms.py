"""Forms of the portal's own pages: adding members, editing their role groups, removing them.

Every guard rail is a form error, so a refused change re-renders the page with a
sentence next to the field instead of failing. The "last Administrator" rule asks
``portal.permissions`` who may manage members; it never reads role fields itself.
"""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

from portal import permissions
from portal.choices import Role
from portal.models import Membership


def roles_field():
    return forms.MultipleChoiceField(
        label="Role groups",
        choices=Role.choices,
        required=False,  # a member without a role group may still view the inventory
        widget=forms.CheckboxSelectMultiple,
        help_text="Administrators manage members and everything else.",
    )


def leaves_no_administrator(membership, new_roles=None) -> bool:
    """Would this change leave the organization with nobody allowed to manage members?

    ``new_roles`` is the membership's role set after the change, or None when the
    membership is being removed. Callers hold the organization's row lock (see
    ``member_views.locked_organization``) so two administrators demoting each other at
    once cannot both pass.
    """
    if not permissions.can_manage_members(membership.roles):
        return False  # changing a non-administrator cannot lose the last one
    if new_roles is not None and permissions.can_manage_members(new_roles):
        return False
    others = (
        Membership.objects.filter(organization_id=membership.organization_id)
        .exclude(pk=membership.pk)
        .only(*Membership.ROLE_FIELDS.values())
    )
    return not any(permissions.can_manage_members(m.roles) for m in others.iterator())


def last_administrator_message(membership, acting_user, removing: bool) -> str:
    organization = membership.organization
    if membership.user_id == acting_user.pk:
        what = "remove yourself" if removing else "remove your own Administrator role"
        return (
            f"You are the last Administrator of {organization}, so you cannot {what}. "
            "Give another member the Administrator role first."
        )
    return f"{organization} must keep at least one Administrator."


class AddExistingMemberForm(forms.Form):
    """Add a user who already has an account (in this or another organization)."""

    username = forms.CharField(label="Username", max_length=150)
    roles = roles_field()

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.user = None

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        model = get_user_model()
        lookup = {f"{model.USERNAME_FIELD}__iexact": username}
        matches = list(model._default_manager.filter(**lookup)[:10])
        # Usernames are case-sensitive in Django: prefer the exact spelling, else a sole match.
        user = next((u for u in matches if u.get_username() == username), None)
        if user is None and len(matches) == 1:
            user = matches[0]
        if user is None:
            raise forms.ValidationError(
                "No user has this username. To give someone a new account, use "
                "“Create a new user” instead."
            )
        if not user.is_active:
            raise forms.ValidationError("This account is deactivated; it cannot be added.")
        if Membership.objects.filter(user=user, organization=self.organization).exists():
            raise forms.ValidationError(
                f"{user.get_username()} is already a member of {self.organization}."
            )
        self.user = user
        return username


class CreateMemberForm(UserCreationForm):
    """Create a new account and make it a member; the password passes Django's validators."""

    roles = roles_field()

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.fields["email"].required = True
        self.fields["username"].widget.attrs.pop("autofocus", None)  # one of two forms on the page
        self.fields["password1"].label = "Initial password"
        self.fields["password2"].label = "Initial password again"


class MemberRolesForm(forms.Form):
    roles = roles_field()

    def __init__(self, *args, membership, acting_user, **kwargs):
        kwargs.setdefault("initial", {"roles": sorted(membership.roles)})
        super().__init__(*args, **kwargs)
        self.membership = membership
        self.acting_user = acting_user

    def clean_roles(self):
        roles = frozenset(self.cleaned_data["roles"])
        if leaves_no_administrator(self.membership, roles):
            raise forms.ValidationError(
                last_administrator_message(self.membership, self.acting_user, removing=False)
            )
        return roles


class RemoveMemberForm(forms.Form):
    """The confirmation; its only validation is the last-Administrator guard."""

    def __init__(self, *args, membership, acting_user, **kwargs):
        super().__init__(*args, **kwargs)
        self.membership = membership
        self.acting_user = acting_user

    def clean(self):
        if leaves_no_administrator(self.membership):
            raise forms.ValidationError(
                last_administrator_message(self.membership, self.acting_user, removing=True)
            )
        return super().clean()


def file_or_text(cleaned, *, what: str, neither: str):
    """A form's ``file`` upload or its pasted ``text``: exactly one of them, else a form
    error. Returns (upload, None) or (None, text)."""
    upload, text = cleaned.get("file"), cleaned.get("text") or ""
    if upload and text.strip():
        raise forms.ValidationError(f"Upload a file or paste {what}, not both.")
    if not upload and not text.strip():
        raise forms.ValidationError(neither)
    return (upload, None) if upload else (None, text)
