"""``manage.py bench_enroll`` runs end to end with tiny numbers and prints its JSON line.

Every part is real: the list is parsed, checked and committed as the batch page does,
RQ workers dispatch, the bridge takes the results, simulated gateways check the keys
and enroll; the children use the test database.
"""

import io
import json

import pytest
from django.core.management import call_command

from devices.choices import DeviceState
from devices.models import Device
from enrollment.choices import EnrollmentStatus
from enrollment.models import EnrollmentBatch, EnrollmentRecord
from portal.models import Organization

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def run(**options) -> tuple[dict, str]:
    out, err = io.StringIO(), io.StringIO()
    options = {"rows": 20, "gateways": 2, "workers": 1, "timeout": 60, **options}
    call_command("bench_enroll", stdout=out, stderr=err, **options)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1, out.getvalue()
    return json.loads(lines[0]), err.getvalue()


def test_bench_enroll_enrolls_every_row_and_prints_one_json_line():
    result, progress = run()
    assert (result["rows"], result["done"], result["failed"]) == (20, 20, 0)
    assert result["provisioned"] == 20 and result["licensed_used"] == 20
    assert result["import_s"] > 0 and result["enroll_devices_per_s"] > 0
    assert "20 / 20 records finished" in progress
    org = Organization.objects.get(slug="bench-enroll")
    records = EnrollmentRecord.objects.for_organization(org)
    assert records.filter(status=EnrollmentStatus.DONE).count() == 20
    assert Device.objects.for_organization(org).filter(state=DeviceState.PROVISIONED).count() == 20

    # A second run starts again from nothing.
    result, _ = run(rows=10)
    assert (result["rows"], result["done"]) == (10, 10)
    assert EnrollmentBatch.objects.filter(organization=org).count() == 1
