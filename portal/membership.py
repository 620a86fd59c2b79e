"""Who belongs to an organization, and with which role groups: every change goes here.

The portal's member pages, the Django admin and the invitee's own page call these
functions; none of them writes a ``Membership`` itself. Each function checks that the
acting user may make the change, keeps at least one Administrator, and writes one
audit entry — whichever door the change came through.

Adding an existing account needs its owner's consent. An Administrator *invites* a
username (``invite``); the answer is the same whether or not such an account exists,
so the form tells nobody which usernames exist. The owner sees the invitation on the
portal's Invitations page and accepts or declines it; it expires after
``INVITATION_DAYS`` and its organization may revoke it until then. The support
superuser can never join this way. A new member joins at the end of the user's list of
organizations, so the organization a user acts in by default (their oldest membership,
see ``portal.tenancy.choose_membership``) never changes behind their back.
"""

from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal import audit, permissions
from portal.models import Invitation, Membership, Organization

INVITATION_DAYS = getattr(settings, "INVITATION_DAYS", 7)
ROLE_FIELDS = list(Membership.ROLE_FIELDS.values())


class Refused(Exception):
    """A membership change the rules do not allow, with a sentence for the user."""


class NotAllowed(Refused):
    pass


class LastAdministrator(Refused):
    pass


@contextmanager
def locked_organization(organization):
    """One transaction holding the organization's row lock: membership changes queue up.

    On SQLite the IMMEDIATE transaction mode already serializes writers; on PostgreSQL
    the ``SELECT … FOR UPDATE`` does.
    """
    with transaction.atomic():
        Organization.objects.select_for_update().get(pk=organization.pk)
        yield


def may_manage(actor, organization) -> bool:
    """The support superuser, or an Administrator of this organization (re-read now)."""
    if not actor.is_active:
        return False
    if actor.is_superuser:
        return True
    membership = Membership.objects.filter(user=actor, organization=organization).first()
    return membership is not None and permissions.can_manage_members(membership.roles)


def _require_manager(actor, organization):
    if not may_manage(actor, organization):
        raise NotAllowed(f"Only an Administrator of {organization} may change its members.")


def leaves_no_administrator(membership, new_roles=None) -> bool:
    """Would this change leave the organization with nobody allowed to manage members?

    ``new_roles`` is the membership's role set after the change, or None when the
    membership is being removed. Callers hold the organization's row lock, so two
    administrators demoting each other at once cannot both pass.
    """
    if not permissions.can_manage_members(membership.roles):
        return False  # changing a non-administrator cannot lose the last one
    if new_roles is not None and permissions.can_manage_members(new_roles):
        return False
    others = (
        Membership.objects.filter(organization_id=membership.organization_id)
        .exclude(pk=membership.pk)
        .only(*ROLE_FIELDS)
    )
    return not any(permissions.can_manage_members(m.roles) for m in others.iterator())


def last_administrator_message(membership, actor, removing: bool) -> str:
    organization = membership.organization
    if membership.user_id == actor.pk:
        what = "remove yourself" if removing else "remove your own Administrator role"
        return (
            f"You are the last Administrator of {organization}, so you cannot {what}. "
            "Give another member the Administrator role first."
        )
    return f"{organization} must keep at least one Administrator."


def _current(membership):
    """The membership as stored now (under the lock), or None when it is gone."""
    return (
        Membership.objects.select_related("user", "organization").filter(pk=membership.pk).first()
    )


# --- changing and removing members ------------------------------------------------------


def change_roles(actor, membership, roles) -> bool:
    """Give ``membership`` exactly ``roles``; False when nothing changed.

    Raises ``NotAllowed`` (the actor does not manage this organization — also when the
    actor would grant itself a role) or ``LastAdministrator``.
    """
    organization = membership.organization
    roles = frozenset(str(role) for role in roles)
    with locked_organization(organization):
        _require_manager(actor, organization)
        current = _current(membership)
        if current is None:
            raise Refused("This membership no longer exists.")
        before = sorted(current.roles)
        if leaves_no_administrator(current, roles):
            raise LastAdministrator(last_administrator_message(current, actor, removing=False))
        current.set_roles(roles)
        after = sorted(current.roles)
        if before == after:
            return False
        current.save(update_fields=ROLE_FIELDS)
        audit.record(
            organization,
            actor,
            "member.change_roles",
            [current],
            username=current.user.get_username(),
            before=before,
            after=after,
        )
    membership.set_roles(roles)
    return True


def remove(actor, membership) -> None:
    """End ``membership``. Raises ``NotAllowed`` or ``LastAdministrator``."""
    organization = membership.organization
    with locked_organization(organization):
        _require_manager(actor, organization)
        current = _current(membership)
        if current is None:
            return
        if leaves_no_administrator(current):
            raise LastAdministrator(last_administrator_message(current, actor, removing=True))
        audit.record(
            organization,
            actor,
            "member.remove",
            [current],
            username=current.user.get_username(),
            roles=sorted(current.roles),
        )
        current.delete()


def add_new_user(actor, organization, user, roles) -> Membership:
    """Make a user just created inside ``organization`` (by ``actor``) its member."""
    with locked_organization(organization):
        _require_manager(actor, organization)
        membership = Membership(user=user, organization=organization)
        membership.set_roles(roles)
        membership.save()
        audit.record(
            organization,
            actor,
            "member.add",
            [membership],
            username=user.get_username(),
            roles=sorted(membership.roles),
            created_user=True,
        )
    return membership


# --- invitations ------------------------------------------------------------------------


def invite(actor, organization, username: str, roles) -> Invitation:
    """Invite whoever owns ``username``; the same answer whether or not anyone does.

    A pending invitation of the same username is replaced (its roles and expiry
    renewed). Members of this organization are refused by the form, which may say so:
    the Administrator sees the member list anyway.
    """
    username = username.strip()
    roles = sorted({str(role) for role in roles})
    now = timezone.now()
    with locked_organization(organization):
        _require_manager(actor, organization)
        Invitation.objects.filter(organization=organization, username=username).pending(now).update(
            revoked_at=now
        )
        invitation = Invitation.objects.create(
            organization=organization,
            username=username,
            roles=roles,
            invited_by=actor,
            expires_at=now + timedelta(days=INVITATION_DAYS),
        )
        audit.record(
            organization,
            actor,
            "member.invite",
            [invitation],
            username=username,
            roles=roles,
            expires_at=invitation.expires_at.isoformat(),
        )
    return invitation


def revoke_invitation(actor, invitation) -> bool:
    """Withdraw a pending invitation; False when it was no longer pending."""
    organization = invitation.organization
    with locked_organization(organization):
        _require_manager(actor, organization)
        now = timezone.now()
        revoked = Invitation.objects.filter(pk=invitation.pk).pending(now).update(revoked_at=now)
        if revoked:
            audit.record(
                organization,
                actor,
                "member.invite_revoke",
                [invitation],
                username=invitation.username,
            )
    return bool(revoked)


def _invitation_for(user, invitation_id):
    invitation = (
        Invitation.objects.for_invitee(user).select_related("organization").filter(pk=invitation_id)
    ).first()
    if invitation is None:
        raise Refused("This invitation is not (or no longer) open to you.")
    return invitation


def may_join(user) -> bool:
    """Support superusers stay outside organizations: they see everything already."""
    return user.is_active and not user.is_superuser


def accept(user, invitation_id) -> Membership:
    """``user`` accepts an invitation addressed to them; returns the new membership."""
    if not may_join(user):
        raise NotAllowed("A support account cannot join an organization.")
    invitation = _invitation_for(user, invitation_id)
    organization = invitation.organization
    with locked_organization(organization):
        now = timezone.now()
        if not Invitation.objects.filter(pk=invitation.pk).pending(now).update(accepted_at=now):
            raise Refused("This invitation is not (or no longer) open to you.")
        membership = Membership(user=user, organization=organization)
        membership.set_roles(invitation.roles)
        try:
            with transaction.atomic():
                membership.save()
        except IntegrityError:
            raise Refused(f"You are already a member of {organization}.") from None
        audit.record(
            organization,
            user,
            "member.join",
            [membership],
            username=user.get_username(),
            roles=sorted(membership.roles),
            invitation=invitation.pk,
            invited_by=invitation.invited_by.get_username() if invitation.invited_by else "",
        )
    return membership


def decline(user, invitation_id) -> None:
    invitation = _invitation_for(user, invitation_id)
    now = timezone.now()
    if Invitation.objects.filter(pk=invitation.pk).pending(now).update(declined_at=now):
        audit.record(
            invitation.organization,
            user,
            "member.invite_decline",
            [invitation],
            username=user.get_username(),
        )
