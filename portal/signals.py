"""Open WebSockets follow access changes within a second, whatever made the change.

A live socket was authorised once, when it connected. These receivers tell a user's
sockets (``portal.live.access_changed``) to check again when:

* the user logs out (that session's sockets close at once);
* one of their memberships is changed or deleted — by the portal, the admin, a
  command, or a cascade from a deleted organization;
* their account changes (deactivated, password changed: other sessions end).

The check itself is the consumer's (``portal.consumers.OrganizationConsumer``). The
messages are sent after the transaction commits, so the check reads the new state.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from portal import live
from portal.models import Membership


def _later(user_id):
    transaction.on_commit(lambda: live.access_changed(user_id))


def on_logout(sender, request, user, **kwargs):
    if user is not None and request is not None and request.session.session_key:
        live.access_changed(user.pk, ended_session=request.session.session_key)


def on_membership_saved(sender, instance, created, **kwargs):
    if not created:
        _later(instance.user_id)


def on_membership_deleted(sender, instance, **kwargs):
    _later(instance.user_id)


def on_user_saved(sender, instance, created, update_fields=None, **kwargs):
    if created or (update_fields and set(update_fields) <= {"last_login"}):
        return  # a login, or a new account: no socket to re-check
    _later(instance.pk)


def connect():
    user_logged_out.connect(on_logout, dispatch_uid="portal.live.logout")
    post_save.connect(on_membership_saved, sender=Membership, dispatch_uid="portal.live.m_save")
    post_delete.connect(
        on_membership_deleted, sender=Membership, dispatch_uid="portal.live.m_delete"
    )
    post_save.connect(on_user_saved, sender=get_user_model(), dispatch_uid="portal.live.user")
