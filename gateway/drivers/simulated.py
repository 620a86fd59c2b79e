"""Simulated devices: the demo's and the benchmarks' stand-in for a real radio.

Each device keeps its enrollment in the agent's store, so a restarted gateway still
knows what it enrolled; ``unenroll`` resets a device to factory state. Latency,
failures and transfer speed are configurable. Failures are drawn from a generator
seeded with the operation id, so a run is reproducible whatever the scheduling.

Two kinds of devices: ``devices`` anonymous ones per gateway (``SIM-<uid>-00001``, in
factory state, one type: the benchmarks'), or with ``fleet`` the devices that
``gateway.fleet`` puts on this gateway (the demo's): their serials, hardware ids,
types and states are the ones the portal's demo seed writes, and only the enrolled
ones send telemetry, so every event comes from a device the portal lists.
"""

import asyncio
import hashlib
import random
from typing import Any

from gateway import fleet
from gateway.codes import DeviceLinkState, EventKind, OpKind, ResultCode
from gateway.drivers import Driver, DriverError, EventSink, OpContext, parse_options

OPTIONS = {
    "devices": (int, 10),
    "latency_ms": (float, 50.0),
    "jitter_ms": (float, 0.0),
    "failure_rate": (float, 0.0),
    "seed": (int, 0),
    "transfer_bps": (float, 250_000.0),
    "events_per_s": (float, 0.0),
    "firmware": (str, "1.0.0"),
    "device_type": (str, "Simulated sensor"),
    "fleet": (bool, False),
}
NS = "simulated"  # the store namespace of device state
# What a simulated device remembers of its enrollment. Not the access key: a device
# checks it (it is printed on its own label), and the simulated devices' state lives in
# the agent's store, which keeps no access key once the operation is done.
ENROLLMENT_FIELDS = ("device_type", "name", "location", "organization")


def serial_number(gateway_uid: str, n: int) -> str:
    stem = (
        gateway_uid
        if len(gateway_uid) <= 48
        else hashlib.sha256(gateway_uid.encode()).hexdigest()[:16]
    )
    return f"SIM-{stem}-{n:05d}"


def hardware_id(gateway_uid: str, n: int) -> str:
    """A stable MAC-like id: locally administered, unicast, unique per gateway and index."""
    digest = hashlib.sha256(f"{gateway_uid}:{n}".encode()).digest()
    octets = [(digest[0] & 0xFC) | 0x02, *digest[1:6]]
    return ":".join(f"{o:02X}" for o in octets)


def access_key(serial: str) -> str:
    """The access key printed on a simulated device's label: derived from its serial, so
    the demo and the benchmarks can enroll simulated devices without a list of keys."""
    return hashlib.sha256(f"fleetgate-simulated-key:{serial}".encode()).hexdigest()[:16].upper()


class SimulatedDriver(Driver):
    name = "simulated"
    kinds = frozenset(OpKind)

    def __init__(self, gateway_uid, options, store):
        super().__init__(gateway_uid, options, store)
        self.opts = parse_options(options, OPTIONS)
        if not 0 <= self.opts["failure_rate"] <= 1:
            raise ValueError("driver option failure_rate: expected 0..1")
        if self.opts["devices"] < 0 or self.opts["transfer_bps"] <= 0:
            raise ValueError("driver options devices/transfer_bps: out of range")
        saved = store.items(NS)
        self.devices: dict[str, dict[str, Any]] = {}
        self.types: dict[str, str] = {}
        for spec in self._specs():
            serial = spec.serial
            self.devices[serial] = saved.get(serial) or self._new_device(spec)
            self.types[serial] = spec.device_type
        self._by_hw = {d["hardware_id"]: s for s, d in self.devices.items()}
        self._locks = {s: asyncio.Lock() for s in self.devices}
        self._dirty: set[str] = set()
        self._events_task: asyncio.Task | None = None

    def _specs(self) -> list[fleet.FleetDevice]:
        """The devices on this gateway's link, as the fleet describes them."""
        uid = self.gateway_uid
        if self.opts["fleet"]:
            found = fleet.find(uid)
            if found is None:
                known = ", ".join(f"{f.uid(1)}…{f.uid(f.gateways)}" for f in fleet.FLEETS.values())
                raise ValueError(f"gateway {uid} is not in the demo fleet ({known})")
            return found[0].devices_of(found[1])
        return [
            fleet.FleetDevice(
                gateway_uid=uid,
                number=n,
                serial=serial_number(uid, n),
                hardware_id=hardware_id(uid, n),
                device_type=self.opts["device_type"],
                name="",
                location="",
                area="",
                state=fleet.NEW,
            )
            for n in range(1, self.opts["devices"] + 1)
        ]

    def _new_device(self, spec: fleet.FleetDevice) -> dict[str, Any]:
        enrolled = spec.link_state != DeviceLinkState.FACTORY
        return {
            "hardware_id": spec.hardware_id,
            "state": spec.link_state,
            "firmware": self.opts["firmware"],
            "config": {},
            "enrollment": (
                {"device_type": spec.device_type, "name": spec.name, "location": spec.location}
                if enrolled
                else None
            ),
        }

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, emit_event: EventSink) -> None:
        if self.opts["events_per_s"] > 0 and self.devices:
            self._events_task = asyncio.create_task(self._emit_events(emit_event))

    async def stop(self) -> None:
        if self._events_task:
            self._events_task.cancel()
            await asyncio.gather(self._events_task, return_exceptions=True)

    def checkpoint(self) -> None:
        if self._dirty:
            self.store.put_many(NS, {s: self.devices[s] for s in self._dirty})
            self._dirty.clear()

    def device_count(self) -> int:
        return len(self.devices)

    def info(self, serial: str) -> dict:
        d = self.devices[serial]
        return {
            "serial": serial,
            "hardware_id": d["hardware_id"],
            "state": d["state"],
            "firmware": d["firmware"],
            "device_type": self.types[serial],
        }

    async def discover(self) -> list[dict]:
        return [self.info(s) for s in self.devices]

    # -- operations ---------------------------------------------------------------------

    def _find(self, ref: dict) -> str:
        serial = ref["serial"]
        if serial not in self.devices:
            raise DriverError(ResultCode.NOT_FOUND, f"no device {serial} on this gateway")
        hw = ref.get("hardware_id")
        if hw and hw.upper() != self.devices[serial]["hardware_id"]:
            raise DriverError(ResultCode.NOT_FOUND, f"{serial} has another hardware id")
        return serial

    def _rng_for(self, op_id: str) -> random.Random | None:
        """Seeded by the operation id; None when nothing random is asked for (it costs)."""
        if not (self.opts["failure_rate"] or self.opts["jitter_ms"]):
            return None
        return random.Random(f"{self.opts['seed']}:{self.gateway_uid}:{op_id}")

    async def _pause(self, rng: random.Random | None) -> None:
        jitter = self.opts["jitter_ms"]
        delay = self.opts["latency_ms"] + (rng.uniform(-jitter, jitter) if rng and jitter else 0)
        await asyncio.sleep(max(0.0, delay) / 1000)

    async def execute(self, op: dict, ctx: OpContext) -> dict:
        serial = self._find(op["device"])
        rng = self._rng_for(op["op"])
        async with self._locks[serial]:
            await self._pause(rng)
            if rng and rng.random() < self.opts["failure_rate"]:
                raise DriverError(ResultCode.FAILED, "simulated failure", self.info(serial))
            await self._apply(serial, op["kind"], op.get("params", {}), ctx)
            self._dirty.add(serial)
        return self.info(serial)

    async def _apply(self, serial: str, kind: str, params: dict, ctx: OpContext) -> None:
        d = self.devices[serial]
        if kind == OpKind.ENROLL:
            if "code" in params and params["code"] != access_key(serial):
                raise DriverError(ResultCode.REJECTED, "wrong access key", self.info(serial))
            d["enrollment"] = {k: params[k] for k in ENROLLMENT_FIELDS if k in params}
            d["config"] = params.get("config", {})
            d["state"] = DeviceLinkState.PROVISIONED.value
        elif kind in (OpKind.PROVISION, OpKind.REPROVISION):
            d["config"] = params.get("config", d["config"])
            d["state"] = DeviceLinkState.PROVISIONED.value
            # Times this device was provisioned, saved with its results: the fault tests
            # read it from the store to prove no operation ran twice.
            d["provisions"] = d.get("provisions", 0) + 1
        elif kind == OpKind.DEPROVISION:
            d["state"] = DeviceLinkState.DEPROVISIONED.value
        elif kind == OpKind.UNENROLL:  # factory reset; the firmware stays
            d.update(state=DeviceLinkState.FACTORY.value, config={}, enrollment=None)
        elif kind == OpKind.LOAD_IMAGE:
            if d["state"] == DeviceLinkState.FACTORY:
                raise DriverError(
                    ResultCode.INVALID_STATE, "device is not enrolled", self.info(serial)
                )
            await self._transfer(params["size"], ctx)
            d["firmware"] = params.get("version") or params["sha256"][:12]
        # wink: the device blinks on its own; nothing changes

    async def _transfer(self, total: int, ctx: OpContext) -> None:
        """Push the image at the configured speed, reporting progress in ~10 steps."""
        step = max(1, total // 10)
        done = 0
        while done < total:
            chunk = min(step, total - done)
            await asyncio.sleep(chunk / self.opts["transfer_bps"])
            done += chunk
            ctx.progress(done, total)

    # -- events -------------------------------------------------------------------------

    def _talking(self) -> list[str]:
        """Who sends telemetry: any device, or in a fleet the enrolled ones only (a device
        in factory state belongs to nobody yet)."""
        if not self.opts["fleet"]:
            return list(self.devices)
        return [s for s, d in self.devices.items() if d["state"] != DeviceLinkState.FACTORY]

    async def _emit_events(self, emit: EventSink) -> None:
        """Telemetry at ``events_per_s`` on average, from random devices."""
        rate = self.opts["events_per_s"]
        rng = random.Random(f"{self.opts['seed']}:{self.gateway_uid}:events")
        tick = min(0.05, max(0.005, 1 / rate))
        loop = asyncio.get_running_loop()
        last, credit, seq = loop.time(), 0.0, 0
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            credit += (now - last) * rate
            last = now
            serials = self._talking() if credit >= 1 else []
            for _ in range(int(credit) if serials else 0):
                serial = rng.choice(serials)
                seq += 1
                data = {"seq": seq, "temp_c": round(18 + rng.random() * 6, 2)}
                emit(
                    {"serial": serial, "hardware_id": self.devices[serial]["hardware_id"]},
                    EventKind.TELEMETRY,
                    data,
                )
            credit -= int(credit)
