"""Provision and deprovision end to end with the real parts: Redis (RQ), Mosquitto, the
bridge, an RQ worker, and simulated gateways in their own process, which discover
their devices first — nothing is put in the database by hand but the gateways.
"""

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import django_rq
import pytest

from devices import operations
from devices.choices import DeviceState as S
from devices.lifecycle import LICENSED_STATES, Action
from devices.models import BulkOperation, Device, Operation
from tests import processes
from tests.factories import make_gateway, make_license, make_member, make_organization
from tests.test_bridge import wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
DEVICES_PER_GATEWAY = 15


def operations_queue():
    from devices.jobs import QUEUE

    return QUEUE


@pytest.fixture
def worker():
    process = processes.worker()
    yield process
    processes.stop(process)


@pytest.fixture
def site(tmp_path):
    org = make_organization("Provisioning Co")
    user = make_member(org, ["administrator"])
    make_license(org, seats=100)
    secrets = {}
    for n in range(2):
        uid = f"e2e-{uuid.uuid4().hex[:10]}-{n}"
        secrets[uid] = f"secret-{uuid.uuid4().hex}"
        make_gateway(org, uid=uid, secret=secrets[uid])
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps(secrets))
    return {"org": org, "user": user, "secrets": secrets_file, "state": tmp_path / "gw"}


@pytest.fixture
def gateways(site, bridge):
    """``python -m gateway simulate`` in its own process, as in the demo."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "--log-level",
            "WARNING",
            "simulate",
            "--secrets",
            str(site["secrets"]),
            "--devices",
            str(DEVICES_PER_GATEWAY),
            "--latency-ms",
            "5",
            "--state-dir",
            str(site["state"]),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        expected = 2 * DEVICES_PER_GATEWAY
        assert wait_for(
            lambda: Device.objects.filter(organization=site["org"]).count() == expected, 30
        ), "the gateways' discoveries did not arrive"
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)


def run_to_the_end(bulk, timeout=60):
    def finished():
        bulk.refresh_from_db()
        return not bulk.is_running

    if not wait_for(finished, timeout):
        from rq.registry import FailedJobRegistry

        queue = django_rq.get_queue(operations_queue())
        failed = FailedJobRegistry(queue=queue)
        reasons = [queue.fetch_job(j).exc_info for j in failed.get_job_ids()[-3:]]
        states = list(Operation.objects.values_list("state", "attempts", "code"))
        pytest.fail(f"not finished: {bulk.done=} {bulk.failed=} {states[:5]} {reasons}")
    return bulk


def test_provision_all_then_deprovision_all(site, gateways, worker):
    org, user = site["org"], site["user"]
    everything = Device.objects.for_organization(org)
    assert set(everything.values_list("state", flat=True)) == {S.DISCOVERED}

    bulk, plan = operations.start(org, user, Action.PROVISION, everything, "all devices")
    assert len(plan.gateways) == 2 and plan.seats_needed == 30
    run_to_the_end(bulk)
    assert (bulk.done, bulk.failed) == (30, 0)
    assert set(everything.values_list("state", flat=True)) == {S.PROVISIONED}
    assert everything.filter(state__in=LICENSED_STATES).count() == 30
    # Every device got exactly one operation, sent once.
    assert set(Operation.objects.values_list("attempts", flat=True)) == {1}

    back, _ = operations.start(org, user, Action.DEPROVISION, everything, "all devices")
    run_to_the_end(back)
    assert (back.done, back.failed) == (30, 0)
    assert set(everything.values_list("state", flat=True)) == {S.DEPROVISIONED}
    assert BulkOperation.objects.filter(finished_at__isnull=True).count() == 0
