"""A clean stop delivers every event the devices emitted before it (no event is lost).

The agent stops its devices' event source first, then drains the outbox, then says
offline. Before, the simulated devices kept emitting while the agent drained and
published its offline status, and what they emitted in that window was dropped at
the disconnect: the event ``test_bridge_restart[sigterm]`` lost about once in six
loaded runs.
"""

import asyncio
import uuid

import pytest

from gateway.agent import Agent
from gateway.config import AgentConfig
from gateway.protocol import MsgType
from tests.gateway.portal_double import PortalDouble

pytestmark = pytest.mark.services


async def _run(agent: Agent, emitted: list[int], seconds: float) -> None:
    sink = agent._emit_event

    def noting(device, kind, data):
        emitted.append(data["seq"])
        sink(device, kind, data)

    agent._emit_event = noting
    await agent.start()
    await asyncio.wait_for(agent.connected.wait(), 10)
    await asyncio.sleep(seconds)
    await agent.stop(timeout=20)


@pytest.mark.parametrize("attempt", range(3))
def test_a_clean_stop_delivers_every_emitted_event(tmp_path, attempt):
    uid, secret = f"stop-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    portal = PortalDouble(uid, secret)
    config = AgentConfig(
        gateway_uid=uid,
        secret=secret,
        state_dir=tmp_path / "agent",
        # Many small bursts: some always fall between the drain and the disconnect.
        driver_options={"devices": 50, "latency_ms": 0, "events_per_s": 3000},
    )
    emitted: list[int] = []
    try:
        asyncio.run(_run(Agent(config), emitted, 0.5))
        received: set[int] = set()
        offline = False
        while not (offline and set(emitted) <= received):
            msg = portal.wait_for(lambda m: m.type in (MsgType.EVENT, MsgType.STATUS), 10)
            if msg.type is MsgType.EVENT:
                received.update(item["data"]["seq"] for item in msg.items)
            else:
                offline = msg.body["state"] == "offline"
    except TimeoutError:
        missing = sorted(set(emitted) - received)
        pytest.fail(f"{len(missing)} of {len(emitted)} events lost, e.g. {missing[:10]}")
    finally:
        portal.clear_retained()
        portal.close()
    assert len(emitted) > 500
