"""Firmware in the Django admin: scoped to the staff member's organizations, read-only."""

import pytest
from django.urls import reverse

from tests.factories import make_firmware_image, make_organization, make_rollout, make_staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("firmware_storage")]


def test_staff_see_only_their_organizations_images_and_rollouts(client):
    acme, globex = make_organization("Acme"), make_organization("Globex")
    mine = make_firmware_image(acme, "1.0", filename="ACME-IMAGE-1.0.fgfw")
    theirs = make_firmware_image(globex, "1.0", filename="GLOBEX-IMAGE-1.0.fgfw")
    make_rollout(acme, mine)
    make_rollout(globex, theirs)
    staff = make_staff(acme)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="firmware"))
    client.force_login(staff)
    body = client.get(reverse("admin:firmware_firmwareimage_changelist")).content.decode()
    assert "ACME-IMAGE" in body and "GLOBEX-IMAGE" not in body
    page = client.get(reverse("admin:firmware_firmwareimage_change", args=[mine.pk]))
    assert page.status_code == 200 and mine.file.name in page.content.decode()
    other = client.get(reverse("admin:firmware_firmwareimage_change", args=[theirs.pk]))
    assert other.status_code == 302  # not found for this staff member: back to the index
    rollouts = client.get(reverse("admin:firmware_rollout_changelist")).content.decode()
    assert "ACME-IMAGE" in rollouts and "GLOBEX-IMAGE" not in rollouts


def test_images_are_read_only_in_the_admin(client):
    image = make_firmware_image(make_organization(), "1.0")
    client.force_login(make_staff(superuser=True))
    url = reverse("admin:firmware_firmwareimage_change", args=[image.pk])
    client.post(url, {"version": "9.9"})
    image.refresh_from_db()
    assert image.version == "1.0"
    delete = client.get(reverse("admin:firmware_firmwareimage_delete", args=[image.pk]))
    assert delete.status_code == 403
