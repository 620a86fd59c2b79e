"""Members of the current organization (included under ``members/`` by portal.urls)."""

from django.urls import path

from portal import member_views

urlpatterns = [
    path("", member_views.MemberListView.as_view(), name="members"),
    path("add/", member_views.MemberAddView.as_view(), name="member-add"),
    path("<int:pk>/edit/", member_views.MemberEditView.as_view(), name="member-edit"),
    path("<int:pk>/remove/", member_views.MemberRemoveView.as_view(), name="member-remove"),
    path(
        "invitations/<int:pk>/revoke/",
        member_views.InvitationRevokeView.as_view(),
        name="invitation-revoke",
    ),
]
