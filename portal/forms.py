"""Forms of the portal's own pages: inviting and creating members, editing their role
groups, removing them.

Every guard rail is a form error, so a refused change re-renders the page with a
sentence next to the field instead of failing. The rules themselves (last
Administrator, who may change what) live in ``portal.membership``; the forms only
show its answer early.
"""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

from portal import membership as rules
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


class InviteMemberForm(forms.Form):
    """Invite an existing account by its username; its owner accepts in the portal.

    Whether the username exists is never said (``portal.membership.invite``); only a
    current member of this organization is refused, as the member list shows them anyway.
    """

    username = forms.CharField(label="Username", max_length=150)
    roles = roles_field()

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        model = get_user_model()
        members = Membership.objects.filter(
            organization=self.organization, **{f"user__{model.USERNAME_FIELD}": username}
        )
        if members.exists():
            raise forms.ValidationError(f"{username} is already a member of {self.organization}.")
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
        if rules.leaves_no_administrator(self.membership, roles):
            raise forms.ValidationError(
                rules.last_administrator_message(self.membership, self.acting_user, removing=False)
            )
        return roles


class RemoveMemberForm(forms.Form):
    """The confirmation; its only validation is the last-Administrator guard."""

    def __init__(self, *args, membership, acting_user, **kwargs):
        super().__init__(*args, **kwargs)
        self.membership = membership
        self.acting_user = acting_user

    def clean(self):
        if rules.leaves_no_administrator(self.membership):
            raise forms.ValidationError(
                rules.last_administrator_message(self.membership, self.acting_user, removing=True)
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
