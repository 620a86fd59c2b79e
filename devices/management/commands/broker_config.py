"""``manage.py broker_config``: Mosquitto's password and ACL files from the gateways.

Each gateway with a broker password gets an account (its uid) limited to its own
topics; the portal's processes get the account ``MQTT_URL`` names. ``--listen`` also
writes a whole ``mosquitto.conf`` for a broker the portal runs itself (the demo's):
``mosquitto -c DIR/mosquitto.conf``. ``--reload`` sends that Mosquitto SIGHUP when the
files changed. With ``FLEETGATE_BROKER_CONFIG_DIR`` set, the portal rewrites the files
itself whenever a gateway is added, rotated or deleted.
"""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from devices import broker


class Command(BaseCommand):
    help = (
        "Write the broker's password and ACL files (and optionally its config) from the gateways."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--out",
            type=Path,
            default=None,
            help="directory for passwd, acl (default: FLEETGATE_BROKER_CONFIG_DIR)",
        )
        parser.add_argument(
            "--listen", default=None, help="HOST:PORT: also write mosquitto.conf listening there"
        )
        parser.add_argument("--certfile", default=None, help="with --listen: TLS certificate")
        parser.add_argument("--keyfile", default=None, help="with --listen: its private key")
        parser.add_argument(
            "--reload", action="store_true", help="SIGHUP the broker (pid file in --out) if changed"
        )

    def handle(self, *args, **options):
        out = options["out"] or (
            Path(settings.BROKER_CONFIG_DIR) if settings.BROKER_CONFIG_DIR else None
        )
        if out is None:
            raise CommandError("Give --out DIR (or set FLEETGATE_BROKER_CONFIG_DIR).")
        if bool(options["certfile"]) != bool(options["keyfile"]):
            raise CommandError("--certfile and --keyfile go together.")
        try:
            written = broker.write(out)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        changed = written.changed
        if options["listen"]:
            host, _, port = options["listen"].rpartition(":")
            if not host or not port.isdigit():
                raise CommandError("--listen takes HOST:PORT, e.g. 127.0.0.1:1884")
            changed |= broker.write_conf(
                out,
                host=host.strip("[]"),
                port=int(port),
                certfile=options["certfile"],
                keyfile=options["keyfile"],
            )
        self.stdout.write(
            f"Broker accounts in {out}: the portal and {written.gateways} gateway(s)"
            + ("" if changed else " (unchanged)")
        )
        if written.without_password:
            shown = ", ".join(written.without_password[:10])
            more = len(written.without_password) - 10
            self.stdout.write(
                f"{len(written.without_password)} gateway(s) have no broker password and cannot "
                f"log in: {shown}{f' and {more} more' if more > 0 else ''}. Rotate their secret "
                "in the Gateways widget (it issues one), or for simulated gateways run "
                "`manage.py gateway_secrets --broker-passwords`."
            )
        if options["reload"] and changed:
            if broker.reload(out):
                self.stdout.write("Told Mosquitto to reread them (SIGHUP).")
            else:
                self.stdout.write(f"No running Mosquitto found ({out / broker.PID}).")
