"""The agent's store: idempotent acceptance, results, delivery marks, atomicity."""

import pytest

from gateway.store import Store
from tests.gateway.helpers import op, result


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "agent.sqlite3")
    yield s
    s.close()


def test_accept_is_idempotent(store):
    new, done = store.accept([op(1), op(2)])
    assert [o["op"] for o in new] == ["op-1", "op-2"] and done == []
    new, done = store.accept([op(1), op(3)])  # op-1 is running: neither new nor done
    assert [o["op"] for o in new] == ["op-3"] and done == []
    store.complete([result(1)])
    new, done = store.accept([op(1)])
    assert new == [] and done == [result(1)]


def test_pending_unsent_and_sent(store, tmp_path):
    store.accept([op(1), op(2), op(3)])
    store.complete([result(1), result(2, ok=False, code="failed")])
    store.mark_sent(["op-1"])
    store.close()
    reopened = Store(tmp_path / "agent.sqlite3")  # what a restart finds
    assert [o["op"] for o in reopened.pending_ops()] == ["op-3"]
    assert [r["op"] for r in reopened.unsent_results()] == ["op-2"]
    assert reopened.result("op-1") == result(1)
    reopened.close()


def test_prune_forgets_only_delivered_results(store):
    store.accept([op(1), op(2), op(3)])
    store.complete([result(1), result(2)])
    store.mark_sent(["op-1"])
    assert store.prune(older_than_s=-1) == 1
    assert store.result("op-1") is None and store.result("op-2") == result(2)
    assert [o["op"] for o in store.pending_ops()] == ["op-3"]


def test_transaction_is_atomic_and_nests(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.put_many("ns", {"a": 1})
        with store.transaction():
            store.put_many("ns", {"b": 2})
        raise RuntimeError
    assert store.items("ns") == {}
    with store.transaction():
        store.put_many("ns", {"a": {"x": [1]}})
    assert store.get("ns", "a") == {"x": [1]} and store.get("ns", "zz", 7) == 7
