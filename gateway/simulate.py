"""Many simulated gateways in one process, for the demo and the benchmarks.

Every gateway is a full ``Agent`` with its own MQTT session and store; they share one
asyncio loop. Each paho client keeps its own network thread: measured on 2 cores, 50
idle gateways cost ~0.3 % CPU, and under load the time goes to JSON, SQLite and asyncio
per operation, not to the threads (docs/gateway-protocol.md, section 15).
"""

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import signal
import time
from pathlib import Path

from gateway.agent import Agent
from gateway.config import AgentConfig, ConfigError

log = logging.getLogger(__name__)


def derive_secret(seed: str, uid: str) -> str:
    """A demo secret the portal can recompute: hex HMAC-SHA256 keyed with the seed."""
    return hmac.new(seed.encode(), uid.encode(), hashlib.sha256).hexdigest()


def _credentials(value) -> dict | None:
    """A secrets file entry: ``"<secret>"`` or ``{"secret": …, "broker_password": …}``."""
    if isinstance(value, str):
        return {"secret": value}
    if (
        isinstance(value, dict)
        and isinstance(value.get("secret"), str)
        and set(value) <= {"secret", "broker_password"}
        and isinstance(value.get("broker_password", ""), str)
    ):
        return dict(value)
    return None


def gateway_secrets(
    *, secrets_file: Path | None, secret_seed: str | None, gateways: int | None, prefix: str
) -> dict[str, dict]:
    """uid -> {"secret", optional "broker_password"}: from the portal's JSON file (written
    by ``manage.py gateway_secrets``), or secrets derived from a seed for ``gateways`` uids."""
    if secrets_file:
        data = json.loads(Path(secrets_file).read_text(encoding="utf-8"))
        entries = {k: _credentials(v) for k, v in data.items()} if isinstance(data, dict) else {}
        if not isinstance(data, dict) or None in entries.values():
            raise ConfigError(
                f"{secrets_file}: expected a JSON object of uid -> secret "
                '(or -> {"secret": …, "broker_password": …})'
            )
        uids = sorted(entries)[:gateways] if gateways else sorted(entries)
        return {uid: entries[uid] for uid in uids}
    if not secret_seed:
        raise ConfigError("give --secrets FILE (from the portal) or --secret-seed TEXT")
    count = gateways or 50
    width = max(3, len(str(count)))
    uids = [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]
    return {uid: {"secret": derive_secret(secret_seed, uid)} for uid in uids}


def build_configs(
    secrets: dict[str, dict],
    *,
    state_dir: Path,
    broker_url: str,
    broker_password: str | None,
    driver_options: dict,
    concurrency: int,
) -> list[AgentConfig]:
    """One agent config per gateway; a gateway's own broker password wins over the shared one."""
    return [
        AgentConfig(
            gateway_uid=uid,
            secret=credentials["secret"],
            state_dir=state_dir / uid,
            broker_url=broker_url,
            broker_password=credentials.get("broker_password") or broker_password,
            driver="simulated",
            driver_options=dict(driver_options),
            concurrency=concurrency,
        )
        for uid, credentials in secrets.items()
    ]


async def simulate(
    configs: list[AgentConfig], *, duration_s: float | None = None, ready_timeout_s: float = 30
) -> dict:
    """Run the gateways until SIGINT/SIGTERM (or ``duration_s``); returns a summary."""
    started = time.monotonic()
    agents = [Agent(c) for c in configs]
    for agent in agents:
        await agent.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(a.connected.wait() for a in agents)), ready_timeout_s
        )
    ready = {
        "simulate": "ready",
        "gateways": len(agents),
        "devices": sum(a.driver.device_count() for a in agents),
        "connected": sum(a.connected.is_set() for a in agents),
        "seconds": round(time.monotonic() - started, 3),
    }
    print(json.dumps(ready), flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration_s)
    await asyncio.gather(*(a.stop() for a in agents))
    return {
        "simulate": "stopped",
        "gateways": len(agents),
        "executed": sum(a.stats["executed"] for a in agents),
        "events_dropped": sum(a.outbox.dropped_events for a in agents),
    }
