"""Command line: ``python -m gateway run --config FILE`` and ``python -m gateway simulate``."""

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from gateway.agent import Agent
from gateway.brokerurl import from_environment, parse_broker_url
from gateway.config import ConfigError, load_config
from gateway.simulate import build_configs, gateway_secrets, simulate


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway", description="Fleetgate gateway agent")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one gateway from a config file")
    run.add_argument("--config", required=True, type=Path, help=".json, .toml or .ini file")

    sim = sub.add_parser("simulate", help="run many simulated gateways in one process")
    sim.add_argument(
        "--gateways", type=int, default=None, help="how many (default 50, or all in --secrets)"
    )
    sim.add_argument("--devices", type=int, default=200, help="devices per gateway")
    sim.add_argument(
        "--fleet",
        action="store_true",
        help="give each gateway the devices gateway/fleet.py puts on it (the demo's), "
        "instead of --devices anonymous ones",
    )
    sim.add_argument(
        "--broker",
        default=None,
        help="mqtt[s]://host[:port] (default: $MQTT_URL, else mqtt://127.0.0.1:1883); "
        "a login in it is ignored: each gateway logs in as itself",
    )
    sim.add_argument(
        "--broker-password", default=None, help="for gateways the secrets file gives none"
    )
    sim.add_argument(
        "--secrets", type=Path, help="JSON object uid -> secret, written by the portal"
    )
    sim.add_argument("--secret-seed", help="derive secrets as hex HMAC-SHA256(seed, uid)")
    sim.add_argument("--prefix", default="sim-gw-", help="uid prefix with --secret-seed")
    sim.add_argument("--state-dir", type=Path, default=Path("var/gateway-sim"))
    sim.add_argument("--latency-ms", type=float, default=50.0)
    sim.add_argument("--jitter-ms", type=float, default=0.0)
    sim.add_argument("--failure-rate", type=float, default=0.0)
    sim.add_argument("--transfer-bps", type=float, default=250_000.0)
    sim.add_argument("--events-per-s", type=float, default=0.0, help="per gateway")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--concurrency", type=int, default=64, help="operations at once per gateway")
    sim.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    return p


async def _run_one(config_path: Path) -> None:
    agent = Agent(load_config(config_path))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await agent.start()
    await stop.wait()
    await agent.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("gateway.mqtt").setLevel(max(logging.WARNING, logging.root.level))
    try:
        if args.command == "run":
            asyncio.run(_run_one(args.config))
            return 0
        secrets = gateway_secrets(
            secrets_file=args.secrets,
            secret_seed=args.secret_seed,
            gateways=args.gateways,
            prefix=args.prefix,
        )
        options = {
            "devices": args.devices,
            "latency_ms": args.latency_ms,
            "jitter_ms": args.jitter_ms,
            "failure_rate": args.failure_rate,
            "transfer_bps": args.transfer_bps,
            "events_per_s": args.events_per_s,
            "seed": args.seed,
            "fleet": args.fleet,
        }
        broker = parse_broker_url(args.broker) if args.broker else from_environment()
        configs = build_configs(
            secrets,
            state_dir=args.state_dir.absolute(),
            broker_url=broker.without_login(tls_files=True),
            broker_password=args.broker_password,
            driver_options=options,
            concurrency=args.concurrency,
        )
        print(json.dumps(asyncio.run(simulate(configs, duration_s=args.duration))), flush=True)
        return 0
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
