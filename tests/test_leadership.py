"""Leader election: two reconcilers at once, one acts; SIGKILL it and the other takes over.

Runs on the configured database: the PostgreSQL run exercises the advisory lock, the
SQLite run the file lock beside the database.
"""

import json
import queue
import signal
import subprocess
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from devices import operations
from devices.lifecycle import Action
from devices.models import Device, Operation, OperationState
from portal.leadership import Leader
from tests import processes
from tests.factories import make_device, make_gateway, make_license, make_member, make_organization

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_one_leader_at_a_time_in_one_process():
    first, second = Leader("test-election"), Leader("test-election")
    try:
        assert first.acquire() is True
        assert second.acquire() is False
        assert first.acquire() is True  # still held: the check does not re-take it
        first.release()
        assert second.acquire() is True
        assert first.acquire() is False
        with Leader("another-name") as other:
            assert other.acquire() is True  # names do not block each other
    finally:
        first.release()
        second.release()


class Lines:
    """A process's stdout, JSON line by line, read on a thread so nothing blocks."""

    def __init__(self, process):
        self.process, self.queue, self.seen = process, queue.Queue(), []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.process.stdout:
            try:
                self.queue.put(json.loads(raw))
            except ValueError:
                continue

    def wait_for(self, predicate, timeout=30.0):
        deadline = timezone.now() + timedelta(seconds=timeout)
        while timezone.now() < deadline:
            try:
                line = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no such line within {timeout} s; seen {self.seen}")

    def close(self):
        """After the process ended: the reader has met the end of its output."""
        self.reader.join(10)
        self.process.stdout.close()

    def drain(self):
        while True:
            try:
                self.seen.append(self.queue.get_nowait())
            except queue.Empty:
                return self.seen


def overdue_operation(org, user, gateway):
    """One provisioning sent long ago and never answered: the reconciler re-queues it."""
    device = make_device(org, gateway=gateway)
    operations.start(org, user, Action.PROVISION, Device.objects.filter(pk=device.pk), "one")
    past = timezone.now() - timedelta(hours=1)
    op = Operation.objects.get(device=device)
    Operation.objects.filter(pk=op.pk).update(
        state=OperationState.SENT, sent_at=past, deadline=past, attempts=1
    )
    return op


def test_two_reconcilers_one_acts_and_the_other_takes_over_after_sigkill():
    org = make_organization()
    user = make_member(org, ["administrator"])
    make_license(org, seats=10)
    # Offline: a re-queued operation then stays queued, so each pass's work is visible.
    gateway = make_gateway(org, is_online=False, secret="s" * 32)

    started = [processes.reconciler(every=0.2, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    lines = [Lines(p) for p in started]
    try:
        decided = [r.wait_for(lambda line: "leader" in line) for r in lines]
        assert sorted(d["leader"] for d in decided) == [False, True], decided
        leader = 0 if decided[0]["leader"] else 1
        standby = 1 - leader

        first = overdue_operation(org, user, gateway)
        lines[leader].wait_for(lambda line: line.get("resent") == 1)
        first.refresh_from_db()
        assert first.state == OperationState.QUEUED
        # The standby did nothing: its only line is the one saying it stands by.
        assert lines[standby].drain() == [decided[standby]]

        processes.stop(started[leader], sig=signal.SIGKILL)
        lines[standby].wait_for(lambda line: line.get("leader") is True)
        second = overdue_operation(org, user, gateway)
        lines[standby].wait_for(lambda line: line.get("resent") == 1)
        second.refresh_from_db()
        assert second.state == OperationState.QUEUED
        assert started[leader].returncode == -signal.SIGKILL
    finally:
        for process, output in zip(started, lines, strict=True):
            processes.stop(process)
            output.close()
