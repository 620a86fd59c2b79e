"""``manage.py bench_events`` runs end to end with tiny numbers and prints its JSON line.

The real parts (daphne, the bridge process, the simulated gateways, Mosquitto, Redis)
all take part; the child processes work on the test database.
"""

import io
import json

import pytest
from django.core.management import call_command

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_bench_events_prints_one_json_line():
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "bench_events",
        gateways=2,
        seconds=2,
        browsers=2,
        events_per_s_per_gateway=50,
        warmup=0.5,
        floor_seconds=0.5,
        stdout=out,
        stderr=err,
    )
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1, out.getvalue()
    result = json.loads(lines[0])
    for key in (
        "events_per_s",
        "p50_latency_ms",
        "p99_latency_ms",
        "mqtt_floor_msgs_per_s",
        "persisted_per_s",
        "events_persisted",
        "bridge_rejected",
        "browsers",
        "gateways",
        "database",
    ):
        assert key in result, key
    assert result["events_per_s"] > 0 and result["events_persisted"] > 0
    assert result["mqtt_floor_msgs_per_s"] > 0
    assert (result["browsers"], result["gateways"]) == (2, 2)
    assert result["browser_errors"] == []
    assert "Measuring" in err.getvalue()
