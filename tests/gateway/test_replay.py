"""ReplayGuard: the window, the id memory, its bound, and the floor under overload."""

import pytest

from gateway.protocol import ProtocolError, Reason, ReplayGuard

NOW = 1_767_225_600_000


def _refused(guard, msg_id, ts, now=NOW, **kw):
    with pytest.raises(ProtocolError) as caught:
        guard.check(msg_id, ts, now, **kw)
    return caught.value.reason is Reason.REPLAYED


def test_window_both_ways():
    guard = ReplayGuard(window_s=10)
    guard.check("a", NOW - 10_000, NOW)
    guard.check("b", NOW + 10_000, NOW)
    assert _refused(guard, "c", NOW - 10_001)
    assert _refused(guard, "d", NOW + 10_001)


def test_repeated_id_is_refused():
    guard = ReplayGuard()
    guard.check("a", NOW, NOW)
    assert _refused(guard, "a", NOW, NOW + 5)


def test_expired_ids_are_forgotten_but_stay_refused_by_the_window():
    guard = ReplayGuard(window_s=10, max_ids=100)
    guard.check("a", NOW, NOW)
    guard.check("b", NOW + 20_000, NOW + 20_000)  # "a" has left the window
    assert len(guard) == 1
    assert _refused(guard, "a", NOW, NOW + 20_000)


def test_bounded_memory_raises_a_floor_instead_of_forgetting_quietly():
    guard = ReplayGuard(window_s=60, max_ids=3)
    for i in range(5):
        guard.check(f"m{i}", NOW + i, NOW + 10)
    assert len(guard) == 3
    # m0 and m1 were forgotten early; replaying them is still refused ...
    assert _refused(guard, "m0", NOW + 0, NOW + 10)
    assert _refused(guard, "m1", NOW + 1, NOW + 10)
    # ... and so is any new message not newer than what was forgotten.
    assert _refused(guard, "late", NOW + 1, NOW + 10)
    guard.check("fresh", NOW + 11, NOW + 11)


def test_status_messages_skip_the_window_and_the_floor():
    guard = ReplayGuard(window_s=60, max_ids=1)
    guard.check("x", NOW + 5, NOW + 5)
    guard.check("y", NOW + 6, NOW + 6)  # evicts x: floor rises
    guard.check("will", NOW - 3_600_000, NOW + 7, windowed=False)
    assert _refused(guard, "will", NOW - 3_600_000, NOW + 8, windowed=False)


def test_bad_arguments():
    with pytest.raises(ValueError):
        ReplayGuard(window_s=0)


def test_statuses_may_be_old_but_never_from_the_future():
    """The portal orders statuses by ts: one signed a day ahead would shadow the next day's."""
    guard = ReplayGuard(window_s=10)
    guard.check("old", NOW - 86_400_000, NOW, windowed=False)
    guard.check("near", NOW + 10_000, NOW, windowed=False)
    assert _refused(guard, "ahead", NOW + 10_001, windowed=False)
