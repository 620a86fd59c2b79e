"""``manage.py bench_provision`` runs end to end with tiny numbers and prints its JSON line.

Every part is real: daphne serves the API request, RQ workers dispatch, the bridge
takes the results, simulated gateways provision; the children use the test database.
"""

import io
import json

import pytest
from django.core.management import call_command

from devices.choices import DeviceState
from devices.models import Device
from portal.models import Organization

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def run(**options) -> tuple[dict, str]:
    out, err = io.StringIO(), io.StringIO()
    options = {
        "devices": 20,
        "gateways": 2,
        "workers": 1,
        "events_per_s_per_gateway": 20,
        "idle_seconds": 0.5,
        "floor_seconds": 0.3,
        "timeout": 60,
        **options,
    }
    call_command("bench_provision", stdout=out, stderr=err, **options)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1, out.getvalue()
    return json.loads(lines[0]), err.getvalue()


def test_bench_provision_provisions_every_device_and_prints_one_json_line():
    result, progress = run()
    assert (result["devices"], result["done"], result["failed"]) == (20, 20, 0)
    assert result["provisioned"] == 20 and result["licensed_used"] == 20
    for key in ("devices_per_s", "mqtt_floor_roundtrips_per_s", "worker_rss_mb"):
        assert result[key] > 0, key
    assert result["events_idle_per_s"] > 0
    assert "events_drop_pct" in result and result["database"]
    assert "20 / 20 operations finished" in progress
    org = Organization.objects.get(slug="bench-provision")
    assert Device.objects.for_organization(org).filter(state=DeviceState.PROVISIONED).count() == 20

    # A second run starts again from factory state: discovered afresh, provisioned once.
    again, _ = run(devices=10)
    assert (again["discovered"], again["done"], again["attempts"]) == (10, 10, {"1": 10})
    assert Device.objects.for_organization(org).count() == 10
