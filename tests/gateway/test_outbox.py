"""The outbox: batching window, batch size, in-flight cap, re-signing after reconnect."""

import asyncio
import itertools
from types import SimpleNamespace

from gateway.outbox import Outbox
from gateway.protocol import MsgType, decode
from tests.gateway.helpers import SECRET, UID, event, lookup, result


class FakeClient:
    def __init__(self):
        self.sent = []
        self._mids = itertools.count(1)

    def publish(self, topic, payload, qos):
        assert qos == 1
        mid = next(self._mids)
        self.sent.append((mid, decode(topic, payload, lookup, None)))
        return SimpleNamespace(mid=mid)


def _outbox(client, delivered=None, **kw):
    box = Outbox(client, UID, SECRET, on_delivered=delivered, **{"window_s": 0.01, **kw})
    box.reconnected([])
    return box


def test_items_are_collected_for_a_window():
    async def go():
        client = FakeClient()
        box = _outbox(client)
        for i in range(3):
            box.add(MsgType.EVENT, event(seq=i))
        assert client.sent == []
        await asyncio.sleep(0.03)
        return client.sent

    sent = asyncio.run(go())
    assert len(sent) == 1 and [e["data"]["seq"] for e in sent[0][1].items] == [0, 1, 2]


def test_full_batches_leave_at_once():
    async def go():
        client = FakeClient()
        box = _outbox(client, window_s=10)
        for i in range(1200):
            box.add(MsgType.EVENT, event(seq=i))
        before = [len(m.items) for _, m in client.sent]
        await box.drain(timeout=0)  # flushes the rest without waiting for acks
        return before, [len(m.items) for _, m in client.sent]

    before, after = asyncio.run(go())
    assert before == [500, 500] and after == [500, 500, 200]


def test_inflight_is_capped_and_acks_release_more():
    delivered = []

    async def go():
        client = FakeClient()
        box = _outbox(client, lambda t, items: delivered.append(items), max_inflight=2)
        for i in range(5):
            box.send(MsgType.RESULT, [result(i)])
        assert len(client.sent) == 2 and box.backlog == 5
        box.acked(1)
        assert len(client.sent) == 3
        for mid in range(2, 6):
            box.acked(mid)
        assert await box.drain(timeout=1)
        return client.sent

    sent = asyncio.run(go())
    assert len(sent) == 5 and [d[0]["op"] for d in delivered] == [f"op-{i}" for i in range(5)]


def test_reconnect_resends_unconfirmed_messages_with_fresh_envelopes():
    async def go():
        client = FakeClient()
        box = _outbox(client)
        box.send(MsgType.RESULT, [result(1)])
        box.send(MsgType.RESULT, [result(2)])
        box.acked(2)
        box.disconnected()
        box.send(MsgType.RESULT, [result(3)])  # waits while disconnected
        assert len(client.sent) == 2
        box.reconnected([1])  # paho dropped mid 1, never confirmed
        return client.sent

    sent = asyncio.run(go())
    ops = [m.items[0]["op"] for _, m in sent]
    assert ops == ["op-1", "op-2", "op-1", "op-3"]
    assert sent[0][1].id != sent[2][1].id  # signed afresh, so no replay refusal


def test_drain_times_out_while_unacknowledged():
    async def go():
        box = _outbox(FakeClient())
        box.send(MsgType.RESULT, [result(1)])
        return await box.drain(timeout=0.05)

    assert asyncio.run(go()) is False
