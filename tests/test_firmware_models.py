"""Firmware models: constraints, clean(), the rollout's state moves and staging arithmetic,
one open image load per device; the demo's image; the header formats."""

import io
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from bench import firmware_demo as demo
from devices.models import Operation
from firmware import formats
from firmware.choices import ROLLOUT_TRANSITIONS, LoadPhase, RolloutState
from firmware.models import FirmwareImage, ImageLoad, Rollout
from gateway.drivers.simulated import OPTIONS as SIMULATED
from tests.factories import (
    make_device,
    make_firmware_image,
    make_organization,
    make_rollout,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("firmware_storage")]


@pytest.fixture
def org():
    return make_organization()


@pytest.fixture
def image(org):
    return make_firmware_image(org, "2.0.0")


def test_the_same_bytes_are_unique_per_organization(org, image):
    copy = FirmwareImage(
        organization=org,
        filename="copy.fgfw",
        size=image.size,
        sha256=image.sha256,
        version="x",
        format="Fleetgate image",
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        copy.save()


def test_rollout_refuses_another_organizations_image(org, image):
    other = make_organization()
    with pytest.raises(ValidationError) as refused:
        make_rollout(other, image)
    assert refused.value.message_dict["image"] == ["This image belongs to another organization."]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"batch_size": 5}, "not both"),
        ({"batch_percent": None}, "not both"),
    ],
)
def test_rollout_takes_a_batch_size_or_a_percentage(org, image, fields, message):
    with pytest.raises(ValidationError, match=message):
        make_rollout(org, image, **fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"batch_percent": 0},
        {"batch_percent": 101},
        {"success_threshold_percent": 0},
        {"failure_pause_percent": 101},
        {"gateway_parallel": 0},
        {"batch_percent": None, "batch_size": 0},
        {"batch_size": 5},  # and the percentage's default: both set
    ],
)
def test_rollout_check_constraints_hold_in_the_database(org, image, fields):
    rollout = make_rollout(org, image)
    with pytest.raises(IntegrityError), transaction.atomic():
        Rollout.objects.filter(pk=rollout.pk).update(**fields)


def test_rollout_moves_through_its_states_and_ends(org, image):
    rollout = make_rollout(org, image)
    assert rollout.state == RolloutState.RUNNING
    assert rollout.move("pause", pause_reason="Paused by devmgr.")
    assert not rollout.move("pause")  # already paused
    assert rollout.move("resume") and rollout.move("cancel")
    assert rollout.state == RolloutState.CANCELLING and rollout.finished_at is None
    assert rollout.move("finish")
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.CANCELLED and rollout.finished_at is not None
    assert not any(rollout.move(action) for action in ("pause", "resume", "cancel", "finish"))


def test_a_stale_rollout_copy_cannot_move_it(org, image):
    rollout = make_rollout(org, image)
    stale = Rollout.objects.get(pk=rollout.pk)
    assert rollout.move("cancel")
    assert not stale.move("pause")  # it still thinks "running": the UPDATE finds nothing
    assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.CANCELLING


def test_every_active_state_can_reach_a_terminal_one():
    active = {RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.CANCELLING}
    for state in active:
        seen, frontier = set(), {state}
        while frontier:
            current = frontier.pop()
            seen.add(current)
            frontier |= {new for (s, _), new in ROLLOUT_TRANSITIONS.items() if s == current} - seen
        assert seen & {RolloutState.FINISHED, RolloutState.CANCELLED}, state


@pytest.mark.parametrize(
    ("fields", "total", "batches"),
    [
        ({}, 100, [10, 25, 25, 25, 15]),
        ({}, 5, [5]),
        ({"canary_size": 0, "batch_percent": 50}, 7, [4, 3]),
        ({"batch_percent": None, "batch_size": 300}, 1000, [10, 300, 300, 300, 90]),
        ({"batch_percent": 1}, 20, [10] + [1] * 10),
    ],
)
def test_planned_batches(org, image, fields, total, batches):
    rollout = make_rollout(org, image, **fields)
    assert rollout.planned_batches(total) == batches
    assert sum(batches) == total


@pytest.mark.parametrize(
    ("done", "failed", "pause"),
    [(0, 2, False), (7, 2, False), (9, 1, False), (8, 2, True), (90, 10, False), (89, 11, True)],
)
def test_failure_rate_pauses_only_after_enough_finished(org, image, done, failed, pause):
    assert make_rollout(org, image).should_pause(done, failed) is pause


def test_one_open_image_load_per_device(org, image):
    device = make_device(org)
    rollouts = [make_rollout(org, image), make_rollout(org, image)]
    now = timezone.now()

    def load(rollout, check=True):
        operation = Operation.objects.create(
            organization=org,
            bulk=rollout.bulk,
            device=device,
            kind="load_image",
            from_state=device.state,
            next_attempt_at=now,
            expires_at=now + timedelta(days=1),
        )
        row = ImageLoad(operation=operation, organization=org, rollout=rollout, device=device)
        if check:
            row.full_clean()
        row.save()
        return row

    first = load(rollouts[0])
    with pytest.raises(ValidationError, match="loading an image in another rollout"):
        load(rollouts[1])
    with pytest.raises(IntegrityError), transaction.atomic():  # whoever races past clean()
        load(rollouts[1], check=False)
    ImageLoad.objects.filter(pk=first.pk).update(phase=LoadPhase.DONE)
    assert load(rollouts[1]).phase == LoadPhase.WAITING


def test_image_load_refuses_another_organizations_device(org, image):
    rollout = make_rollout(org, image)
    foreign = make_device(make_organization())
    load = ImageLoad(organization=org, rollout=rollout, device=foreign)
    with pytest.raises(ValidationError) as refused:
        load.clean()
    assert "device" in refused.value.message_dict


# -- the demo ------------------------------------------------------------------------


def test_demo_seed_gives_the_simulated_type_an_image_once(org):
    image = demo.seed(org)
    assert demo.DEVICE_TYPE == SIMULATED["device_type"][1] == "Simulated sensor"
    assert [t.name for t in image.device_types.all()] == ["Simulated sensor"]
    assert image.version == "1.1.0" != SIMULATED["firmware"][1]  # an update for them
    assert demo.seed(org) == image and FirmwareImage.objects.count() == 1


def test_seed_demo_command_includes_the_image():
    call_command("seed_demo", "--devices", "20", stdout=io.StringIO())
    call_command("seed_demo", "--devices", "20", stdout=io.StringIO())
    image = FirmwareImage.objects.get(organization__slug="demo")
    assert image.filename == demo.FILENAME
    assert not FirmwareImage.objects.filter(organization__slug="other").exists()


# -- formats ---------------------------------------------------------------------------


def test_fgfw_header_layout():
    data = formats.fgfw_image("1.2.3", b"abc")
    assert len(data) == 64 + 3 and data[:4] == b"FGFW" and data[4] == 1 and data[5] == 5
    assert data[6:11] == b"1.2.3" and int.from_bytes(data[40:48], "big") == 3
    checker = formats.FgfwChecker()
    for i in range(0, len(data), 7):  # any chunking
        checker.feed(data[i : i + 7])
    assert checker.finish() == {"version": "1.2.3"}


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.FGFW", "Fleetgate image"),
        ("a.hex", "Intel HEX"),
        ("a.apb", "LON application image"),
        ("a.ndl", "LON NodeLoad image"),
        ("a.nx", "Neuron firmware image"),
        ("a.NXI", "Neuron firmware image"),
        ("a.weird", "Image"),
    ],
)
def test_formats_by_extension(name, fmt):
    assert formats.for_filename(name).name == fmt
