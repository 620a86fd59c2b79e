"""Provisioning a few hundred devices survives its faults, with every part real.

DESIGN.md ("One action, end to end", step 7): the database is the source of truth,
Redis may lose everything, the broker may restart, a worker may die, a gateway may go
away — and still every operation ends (done, or failed with a reason), no device is
provisioned twice, and the license seats match the devices that hold them.

Each scenario runs the portal as a deployment does — bridge, RQ worker and reconciler
as subprocesses (``tests.processes``) — against a private Redis and a private
Mosquitto on free ports, so killing, flushing and restarting them touches nobody else
(the shared services on 6379/1883 are never used here, not even by this process:
``settings`` points RQ, the channel layer and MQTT at the private ones; django-rq 4.2
builds its connection from ``RQ_QUEUES`` on every ``get_queue``, so nothing stale is
cached). Simulated gateways run as ``python -m gateway simulate`` with a latency that
makes a batch take a few seconds, and the per-gateway cap keeps the worker dispatching
throughout, so a fault lands mid-batch. Short answer deadlines and backoff come in
through the environment.

"Provisioned twice" is counted on the gateway side: the simulated driver keeps a
``provisions`` counter per device in the agent's store, written with the results.
"""

import contextlib
import functools
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings

from devices import operations
from devices.choices import DeviceState as S
from devices.choices import OperationState
from devices.lifecycle import LICENSED_STATES, Action
from devices.models import Device, DeviceEvent, Gateway, Operation
from gateway.drivers.simulated import NS as SIMULATED_NS
from gateway.store import Store
from licensing import capacity
from tests import processes
from tests.factories import make_gateway, make_license, make_member, make_organization
from tests.gateway.portal_double import free_port, start_broker

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

GATEWAYS = 3
DEVICES_PER_GATEWAY = 100
TOTAL = GATEWAYS * DEVICES_PER_GATEWAY
LATENCY_MS = 100  # per device on the simulated link
JITTER_MS = 60  # ± on the latency: answers trickle in rather than arrive as one batch
AGENT_CONCURRENCY = 10  # devices at once per gateway
ANSWER_TIMEOUT_S = 3.0
MAX_ATTEMPTS = 5
PORTAL_ENV = {
    "FLEETGATE_ANSWER_TIMEOUT_S": str(ANSWER_TIMEOUT_S),
    "FLEETGATE_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "FLEETGATE_BACKOFF_S": "0.5,4",
    # 10 in flight per gateway: a 100-device share goes out in ~10 rounds, each one a
    # dispatch job started by the previous round's results — the worker stays busy.
    "FLEETGATE_GATEWAY_CONCURRENCY": "10",
    "LOG_LEVEL": "WARNING",
}
TERMINAL = (OperationState.DONE, OperationState.FAILED, OperationState.CANCELLED)


def wait_until(predicate, timeout: float, what: str, detail=lambda: "", interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}. {detail()}")


# -- private services -----------------------------------------------------------------


class PrivateRedis:
    """A Redis of this test's own (no persistence): flushing it loses everything, truly."""

    def __init__(self, workdir: Path):
        self.port, self.dir = free_port(), workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--daemonize", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers():
            try:
                with self.client() as c:
                    return c.ping()
            except redis.RedisError:
                return False

        try:
            wait_until(answers, 10, "the private Redis")
        except AssertionError:
            self.process.kill()
            self.process.wait(5)
            raise

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def flush_and_stop(self) -> None:
        with self.client() as c:
            c.flushall()
        self.stop()


class PrivateMosquitto:
    """A Mosquitto of this test's own, with persistence, restarted on the same port."""

    def __init__(self, workdir: Path):
        self.port, self.dir = free_port(), workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.process = start_broker(self.port, self.dir)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Mosquitto saves sessions and queues
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.process = start_broker(self.port, self.dir)


# -- the portal's processes and the gateways ------------------------------------------


class Portal:
    """Bridge, worker and reconciler as subprocesses, their output in log files.

    ``supervise`` starts again whatever has exited, as a deployment's process manager
    (systemd ``Restart=always``) would: RQ's worker loop quits by design when Redis
    vanishes while it runs a job. Restarts are counted and reported.
    """

    STARTERS = {
        "bridge": processes.bridge,
        "worker": processes.worker,
        "reconciler": functools.partial(processes.reconciler, every=0.5),
    }

    def __init__(self, environ: dict, logs: Path):
        self.environ, self.logs = environ, logs
        self.procs: dict[str, subprocess.Popen] = {}
        self.started: Counter = Counter()
        self.restarts: Counter = Counter()

    def start(self, kind: str) -> subprocess.Popen:
        self.started[kind] += 1
        with open(self.logs / f"{kind}-{self.started[kind]}.log", "ab") as log:
            process = self.STARTERS[kind](self.environ, stdout=log, stderr=subprocess.STDOUT)
        self.procs[kind] = process
        return process

    def kill(self, kind: str, sig=signal.SIGKILL) -> None:
        processes.stop(self.procs[kind], sig)

    def supervise(self) -> None:
        for kind, process in list(self.procs.items()):
            if process.poll() is not None:
                self.restarts[kind] += 1
                self.start(kind)

    def stop_all(self) -> None:
        for process in self.procs.values():
            processes.stop(process)

    def tail(self, lines: int = 15) -> str:
        out = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(out)

    def reconciler_totals(self) -> Counter:
        """What the reconciler's passes did, summed from its JSON lines."""
        totals: Counter = Counter()
        for log in self.logs.glob("reconciler-*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    row = json.loads(line)
                    if "leader" in row:  # a change of leadership, not a pass
                        continue
                    totals.update({k: row[k] for k in ("resent", "gave_up", "expired", "jobs")})
        return totals


@dataclass
class Fleet:
    """Simulated gateways: one ``python -m gateway simulate`` process per group."""

    secrets: dict[str, str]
    state: Path
    broker_url: str
    logs: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, uids: list[str], *extra: str) -> subprocess.Popen:
        secrets_file = self.state / f"{name}.secrets.json"
        secrets_file.write_text(json.dumps({uid: self.secrets[uid] for uid in uids}))
        with open(self.logs / f"simulate-{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--log-level", "WARNING", "simulate"]
                + ["--secrets", str(secrets_file), "--devices", str(DEVICES_PER_GATEWAY)]
                + ["--latency-ms", str(LATENCY_MS), "--jitter-ms", str(JITTER_MS)]
                + ["--concurrency", str(AGENT_CONCURRENCY), "--state-dir", str(self.state)]
                + ["--broker", self.broker_url, *extra],
                cwd=processes.ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.procs[name]

    def stop(self, name: str, sig=signal.SIGTERM) -> None:
        processes.stop(self.procs[name], sig, timeout=20)

    def stop_all(self) -> None:
        for name in self.procs:
            self.stop(name)

    def executed(self) -> int:
        """Operations the agents ran on their link, from each process's closing summary
        (a process killed with SIGKILL has none; its store still counts, see below)."""
        total = 0
        for log in self.logs.glob("simulate-*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith('{"simulate": "stopped"'):
                    total += json.loads(line)["executed"]
        return total

    def provisions(self) -> dict[str, int]:
        """serial → times the device was provisioned, read from the stopped agents' stores."""
        counts = {}
        for uid in self.secrets:
            store = Store(self.state / uid / "agent.sqlite3")
            try:
                for serial, device in store.items(SIMULATED_NS).items():
                    counts[serial] = device.get("provisions", 0)
            finally:
                store.close()
        return counts


@dataclass
class Stack:
    org: object
    user: object
    redis: PrivateRedis
    broker: PrivateMosquitto
    portal: Portal
    fleet: Fleet
    uids: list[str]

    def detail(self) -> str:
        rows = Operation.objects.values_list("state", "attempts")
        return (
            f"operations {Counter(rows)}; gateways online "
            f"{list(Gateway.objects.values_list('uid', 'is_online'))}\n{self.portal.tail()}"
        )

    def wait(self, predicate, timeout: float, what: str, interval=0.05) -> None:
        """Poll ``predicate`` (keeping the portal's processes running) until it holds."""

        def check():
            self.portal.supervise()
            return predicate()

        wait_until(check, timeout, what, self.detail, interval)

    def wait_discovered(self, n: int) -> None:
        devices = Device.objects.for_organization(self.org)
        self.wait(lambda: devices.count() >= n, 30, f"{n} discovered devices")

    def wait_online(self, uids, online=True, timeout=20) -> None:
        gateways = Gateway.objects.filter(uid__in=uids, is_online=online)
        state = "online" if online else "offline"
        self.wait(lambda: gateways.count() == len(uids), timeout, f"{uids} {state}")

    def provision_all(self):
        devices = Device.objects.for_organization(self.org)
        return operations.start(self.org, self.user, Action.PROVISION, devices, "all devices")

    def wait_done(self, n: int, timeout=30) -> None:
        done = Operation.objects.filter(state=OperationState.DONE)
        self.wait(lambda: done.count() >= n, timeout, f"{n} operations done")

    def wait_all_terminal(self, timeout=60) -> None:
        still_open = Operation.objects.exclude(state__in=TERMINAL)
        self.wait(lambda: not still_open.exists(), timeout, "every operation terminal", 0.1)

    def worker_busy(self) -> bool:
        """True while the RQ worker runs a job (its state in Redis says so)."""
        try:
            with self.redis.client() as c:
                return any(c.hget(key, "state") == b"busy" for key in c.scan_iter("rq:worker:*"))
        except redis.RedisError:
            return False


@pytest.fixture
def stack(tmp_path, settings):
    """Private Redis and Mosquitto, an organization with gateways, the portal running."""
    with contextlib.ExitStack() as cleanup:  # whatever was started stops, even on failure
        private_redis = PrivateRedis(tmp_path / "redis")
        cleanup.callback(private_redis.stop)
        broker = PrivateMosquitto(tmp_path / "mosquitto")
        cleanup.callback(broker.stop)
        # This process enqueues (``operations.start`` → after commit) and publishes live:
        # both to the private Redis.
        settings.REDIS_URL = private_redis.url
        settings.MQTT_URL = broker.url
        settings.RQ_QUEUES = {
            "default": {**django_settings.RQ_QUEUES["default"], "URL": private_redis.url}
        }
        settings.CHANNEL_LAYERS = {
            "default": {
                **django_settings.CHANNEL_LAYERS["default"],
                "CONFIG": {"hosts": [private_redis.url]},
            }
        }
        org = make_organization("Faulty Networks")
        user = make_member(org, ["administrator"])
        make_license(org, seats=TOTAL)  # exactly enough: no slack for the accounting to hide in
        secrets = {}
        for n in range(GATEWAYS):
            uid = f"fault-{uuid.uuid4().hex[:8]}-{n}"
            secrets[uid] = f"secret-{uuid.uuid4().hex}"
            make_gateway(org, uid=uid, secret=secrets[uid])
        logs, state = tmp_path / "logs", tmp_path / "gw"
        logs.mkdir()
        state.mkdir()
        portal = Portal(
            {**PORTAL_ENV, "REDIS_URL": private_redis.url, "MQTT_URL": broker.url}, logs
        )
        cleanup.callback(portal.stop_all)
        fleet = Fleet(secrets, state, broker.url, logs)
        cleanup.callback(fleet.stop_all)
        for kind in ("bridge", "worker", "reconciler"):
            portal.start(kind)

        def bridge_subscribed():  # it reports its counters to Redis once a second
            with private_redis.client() as c:
                return any(
                    json.loads(c.get(key) or "{}").get("connects")
                    for key in c.scan_iter("fleetgate:bridge:stats:*")
                )

        wait_until(bridge_subscribed, 20, "the bridge to subscribe", portal.tail)
        yield Stack(org, user, private_redis, broker, portal, fleet, sorted(secrets))


def check_exact(stack: Stack, bulk, started: float, fault: str, **measured) -> dict:
    """The end state every scenario must reach; returns the measured outcome."""
    ops = Operation.objects.filter(bulk=bulk)
    states = Counter(ops.values_list("state", flat=True))
    attempts = Counter(ops.values_list("attempts", flat=True))
    assert states == {OperationState.DONE: TOTAL}, stack.detail()
    bulk.refresh_from_db()
    assert (bulk.done, bulk.failed, bulk.cancelled) == (TOTAL, 0, 0)
    assert bulk.finished_at is not None
    devices = Device.objects.for_organization(stack.org)
    assert Counter(devices.values_list("state", flat=True)) == {S.PROVISIONED: TOTAL}

    stack.fleet.stop_all()  # the stores are read once the agents have closed them
    provisions = stack.fleet.provisions()
    twice = {serial: n for serial, n in provisions.items() if n > 1}
    assert not twice, f"provisioned more than once on the gateway: {twice}"
    provisioned = set(devices.filter(state=S.PROVISIONED).values_list("serial_number", flat=True))
    assert provisioned == {serial for serial, n in provisions.items() if n == 1}

    licensed = devices.filter(state__in=LICENSED_STATES).count()
    usage = capacity.usage(stack.org)
    assert licensed == len(provisioned) == TOTAL
    assert (usage.used, usage.total, usage.free) == (TOTAL, TOTAL, 0)

    # The bridge and the reconciler ride out every fault on their own.
    assert not stack.portal.restarts.keys() - {"worker"}, stack.portal.restarts
    outcome = {
        "fault": fault,
        "operations": dict(states),
        "attempts": dict(sorted(attempts.items())),
        "generations": dict(Counter(ops.values_list("generation", flat=True))),
        "provisioned_twice": len(twice),
        "executed_on_gateways": stack.fleet.executed(),
        "reconciler": dict(stack.portal.reconciler_totals()),
        "restarted": dict(stack.portal.restarts),
        "seconds": round(time.monotonic() - started, 1),
        **measured,
    }
    print(json.dumps(outcome, default=str))
    return outcome


# -- the scenarios ----------------------------------------------------------------------


def test_worker_killed_mid_batch(stack):
    """kill -9, aimed at a moment the worker runs a dispatch job; a new worker takes
    over. Jobs waiting in Redis survive; what a dead job claimed but never published
    passes its answer deadline and the reconciler re-sends it under the same id (the
    outcome's attempts show whether the kill landed there)."""
    stack.fleet.start("all", stack.uids)
    stack.wait_discovered(TOTAL)
    started = time.monotonic()
    bulk, plan = stack.provision_all()
    assert plan.seats_needed == TOTAL and plan.waiting == 0
    stack.wait_done(TOTAL // 4)
    busy, deadline = False, time.monotonic() + 3
    while not busy and time.monotonic() < deadline:
        busy = stack.worker_busy()
    stack.portal.kill("worker")
    done_at_kill = Operation.objects.filter(state=OperationState.DONE).count()
    stack.portal.start("worker")
    stack.wait_all_terminal()
    check_exact(
        stack,
        bulk,
        started,
        "worker SIGKILL",
        killed_while_busy=busy,
        done_at_fault=done_at_kill,
    )


def test_redis_flushed_and_restarted_mid_batch(stack):
    """Redis loses every job and key mid-batch and stays away a moment. The bridge keeps
    writing answers and telemetry without it (each exactly once), and once Redis is
    back the reconciler re-enqueues from the database what the lost jobs would have sent.
    """
    stack.fleet.start("all", stack.uids, "--events-per-s", "20")
    stack.wait_discovered(TOTAL)
    started = time.monotonic()
    bulk, _ = stack.provision_all()
    stack.wait_done(TOTAL // 4)
    done = Operation.objects.filter(state=OperationState.DONE)
    sent = Operation.objects.filter(state=OperationState.SENT)
    in_flight = list(sent.values_list("pk", flat=True))
    done_at_fault = done.count()
    stack.redis.flush_and_stop()
    # Down until every answer on its way has been written: the bridge needs no Redis for
    # that. The dispatches those answers would start are lost with everything else.
    stack.wait(
        lambda: done.filter(pk__in=in_flight).count() == len(in_flight),
        2 * ANSWER_TIMEOUT_S,
        f"the {len(in_flight)} operations in flight answered while Redis is down",
    )
    done_while_down = done.count() - done_at_fault
    stack.redis.start()
    stack.wait_all_terminal()
    outcome = check_exact(
        stack,
        bulk,
        started,
        "Redis FLUSHALL + restart",
        in_flight_at_fault=len(in_flight),
        done_while_down=done_while_down,
    )
    # Telemetry sequence numbers are unique per gateway: a batch written twice shows here.
    events = Counter(DeviceEvent.objects.values_list("gateway_id", "data__seq"))
    assert events and max(events.values()) == 1, f"events stored twice: {events.most_common(3)}"
    assert outcome["done_while_down"] >= len(in_flight)


def test_mosquitto_restarted_mid_batch(stack):
    """The broker goes away (SIGTERM: it saves its sessions) for longer than an answer
    deadline and comes back with its persistence. Everyone reconnects; what was in flight
    is re-sent under the same id, and the gateways answer those from memory instead of
    provisioning again."""
    stack.fleet.start("all", stack.uids)
    stack.wait_discovered(TOTAL)
    started = time.monotonic()
    bulk, _ = stack.provision_all()
    stack.wait_done(TOTAL // 4)
    done_at_fault = Operation.objects.filter(state=OperationState.DONE).count()
    in_flight = list(
        Operation.objects.filter(state=OperationState.SENT).values_list("pk", flat=True)
    )
    stopped_at = time.monotonic()
    stack.broker.stop()
    # Down until the reconciler has given up waiting for every answer in flight.
    overdue = Operation.objects.filter(pk__in=in_flight, state=OperationState.SENT, attempts=1)
    stack.wait(lambda: not overdue.exists(), 3 * ANSWER_TIMEOUT_S, "answers overdue")
    down_for = time.monotonic() - stopped_at
    stack.broker.restart()
    stack.wait_all_terminal()
    outcome = check_exact(
        stack,
        bulk,
        started,
        "Mosquitto SIGTERM + restart",
        done_at_fault=done_at_fault,
        in_flight_at_fault=len(in_flight),
        broker_down_seconds=round(down_for, 1),
    )
    assert outcome["reconciler"]["resent"] >= 1  # the same-id re-send path really ran


def test_gateway_offline_for_a_while_then_back(stack):
    """A gateway dies (its last will marks it offline); its devices wait — queued, never
    sent, not failed — while the others finish, and go through once it is back."""
    online, away = stack.uids[:-1], stack.uids[-1:]
    stack.fleet.start("staying", online)
    stack.fleet.start("leaving", away)
    stack.wait_discovered(TOTAL)
    stack.wait_online(stack.uids)
    stack.fleet.stop("leaving", signal.SIGKILL)  # no goodbye: the broker sends the will
    stack.wait_online(away, online=False)

    started = time.monotonic()
    bulk, plan = stack.provision_all()
    assert plan.waiting == DEVICES_PER_GATEWAY and plan.seats_needed == TOTAL
    waiting = Operation.objects.filter(bulk=bulk, gateway__uid__in=away)
    others = Operation.objects.filter(bulk=bulk).exclude(gateway__uid__in=away)
    # Offline for longer than an answer deadline: nothing of its share may be sent,
    # retried or failed meanwhile, however many reconciler passes go by.
    stack.wait(
        lambda: (
            not others.exclude(state=OperationState.DONE).exists()
            and time.monotonic() - started > ANSWER_TIMEOUT_S + 1
        ),
        60,
        "the online gateways' share done",
    )
    assert Counter(waiting.values_list("state", "attempts")) == {
        (OperationState.QUEUED, 0): DEVICES_PER_GATEWAY
    }
    assert Device.objects.filter(gateway__uid__in=away, state=S.PROVISIONING).count() == (
        DEVICES_PER_GATEWAY
    )
    assert capacity.usage(stack.org).used == TOTAL  # the waiting devices keep their seats
    offline_for = time.monotonic() - started

    stack.fleet.start("leaving", away)
    stack.wait_online(away)
    stack.wait_all_terminal()
    check_exact(
        stack,
        bulk,
        started,
        "gateway offline then back",
        offline_seconds=round(offline_for, 1),
    )
