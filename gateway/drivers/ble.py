"""Bluetooth Low Energy devices through bleak.

A Fleetgate BLE device advertises the Fleetgate service UUID, or manufacturer data
under MANUFACTURER_ID starting with ``FG\\x01`` followed by a state byte and its serial.
An operation is one connection: write a compact JSON request to the control
characteristic (write with response, at most 512 bytes), for ``load_image`` stream the
image to the image characteristic, then read the device's JSON acknowledgement back.
docs/gateway-protocol.md ("BLE devices") is the device maker's reference.

No adapter exists in CI: the scanner and client classes are injectable, and the two
ways bleak says "there is no Bluetooth here" become the ``no_adapter`` result and an
``unavailable`` link in hello.
"""

import asyncio
import contextlib
import json

from gateway.codes import DeviceLinkState, LinkState, OpKind, ResultCode
from gateway.drivers import Driver, DriverError, OpContext, parse_options

SERVICE_UUID = "f1ee0001-0b1e-4f1e-a7e0-5eed0000f1ee"
CONTROL_CHAR_UUID = "f1ee0002-0b1e-4f1e-a7e0-5eed0000f1ee"  # write: JSON request
ACK_CHAR_UUID = "f1ee0003-0b1e-4f1e-a7e0-5eed0000f1ee"  # read: JSON acknowledgement
IMAGE_CHAR_UUID = "f1ee0004-0b1e-4f1e-a7e0-5eed0000f1ee"  # write: image chunks, in order
MANUFACTURER_ID = 0xFFFF  # Bluetooth SIG "for testing"; a product uses its company id
ADV_PREFIX = b"FG\x01"  # then one state byte, then the serial in ASCII
ADV_STATES = {
    0: DeviceLinkState.FACTORY,
    1: DeviceLinkState.PROVISIONED,
    2: DeviceLinkState.DEPROVISIONED,
}
MAX_REQUEST = 512  # an ATT attribute value is at most 512 bytes
NO_ADAPTER = "no Bluetooth adapter available"

OPTIONS = {
    "adapter": (str, ""),  # e.g. hci0; empty: the system default
    "scan_timeout_s": (float, 5.0),
    "probe_timeout_s": (float, 1.0),  # the scan at start-up that checks the adapter
    "connect_timeout_s": (float, 15.0),
    "max_connections": (int, 4),  # simultaneous links; most adapters manage few
    "chunk_size": (int, 244),  # image bytes per write (ATT MTU 247 - 3)
}


def _is_no_adapter(error: BaseException) -> bool:
    """bleak without D-Bus raises a bare FileNotFoundError; without bluetoothd, a D-Bus error."""
    from bleak.exc import BleakBluetoothNotAvailableError, BleakDBusError

    if isinstance(error, FileNotFoundError | BleakBluetoothNotAvailableError):
        return True
    if isinstance(error, BleakDBusError):
        text = f"{error.dbus_error} {error.dbus_error_details or ''}"
        return "org.bluez was not provided" in text or "ServiceUnknown" in text
    return False


def parse_advertisement(address: str, adv) -> dict | None:
    """Device info from one advertisement, or None when it is not a Fleetgate device."""
    data = (adv.manufacturer_data or {}).get(MANUFACTURER_ID, b"")
    ours = data.startswith(ADV_PREFIX)
    if not ours and SERVICE_UUID not in [u.lower() for u in adv.service_uuids or []]:
        return None
    info = {"serial": adv.local_name or address, "hardware_id": address.upper()}
    if ours and len(data) > len(ADV_PREFIX):
        info["state"] = ADV_STATES.get(data[len(ADV_PREFIX)], DeviceLinkState.FACTORY).value
        serial = data[len(ADV_PREFIX) + 1 :].decode("ascii", "replace").strip("\x00 ")
        if serial and serial.isprintable():
            info["serial"] = serial[:64]
    if adv.rssi is not None and -127 <= adv.rssi <= 20:
        info["rssi"] = adv.rssi
    return info


def build_request(op: dict, gateway_uid: str) -> bytes:
    """The JSON written to the control characteristic for one operation."""
    params = op.get("params", {})
    req: dict = {"v": 1, "id": op["op"], "op": op["kind"], "gw": gateway_uid}
    kind = op["kind"]
    if kind == OpKind.ENROLL:
        req["enr"] = {k: v for k, v in params.items() if k != "config"}
    if "config" in params:
        req["cfg"] = params["config"]
    if kind == OpKind.WINK:
        req["s"] = params.get("seconds", 5)
    if kind == OpKind.LOAD_IMAGE:
        req.update(size=params["size"], sha256=params["sha256"])
        if "version" in params:
            req["ver"] = params["version"]
    data = json.dumps(req, separators=(",", ":")).encode()
    if len(data) > MAX_REQUEST:
        raise DriverError(ResultCode.BAD_PARAMS, f"request is {len(data)} bytes > {MAX_REQUEST}")
    return data


class BleDriver(Driver):
    name = "ble"
    kinds = frozenset(OpKind)

    def __init__(self, gateway_uid, options, store, *, scanner_cls=None, client_cls=None):
        super().__init__(gateway_uid, options, store)
        self.opts = parse_options(options, OPTIONS)
        if scanner_cls is None or client_cls is None:
            from bleak import BleakClient, BleakScanner

            scanner_cls, client_cls = scanner_cls or BleakScanner, client_cls or BleakClient
        self.scanner_cls, self.client_cls = scanner_cls, client_cls
        self._seen: dict[str, tuple[object, dict]] = {}  # serial -> (BLEDevice, info)
        self._slots = asyncio.Semaphore(self.opts["max_connections"])

    def _bluez(self) -> dict:
        return {"bluez": {"adapter": self.opts["adapter"]}} if self.opts["adapter"] else {}

    def _link_error(self, error: BaseException) -> DriverError:
        if _is_no_adapter(error):
            self.link_state, self.link_detail = LinkState.UNAVAILABLE, NO_ADAPTER
            return DriverError(ResultCode.NO_ADAPTER, NO_ADAPTER)
        from bleak.exc import BleakDeviceNotFoundError, BleakError

        if isinstance(error, BleakDeviceNotFoundError):
            return DriverError(ResultCode.NOT_FOUND, "device did not answer a connection")
        if isinstance(error, TimeoutError):
            return DriverError(ResultCode.TIMEOUT, "BLE link timed out")
        if isinstance(error, BleakError | OSError):
            return DriverError(ResultCode.FAILED, f"BLE error: {error}"[:500])
        raise error

    async def start(self, emit_event) -> None:
        # A failed probe leaves the link state saying why; operations try again.
        with contextlib.suppress(DriverError):
            await self._scan(self.opts["probe_timeout_s"])

    def device_count(self) -> int:
        return len(self._seen)

    async def _scan(self, timeout: float) -> list[dict]:
        try:
            found = await self.scanner_cls.discover(
                timeout=timeout, return_adv=True, **self._bluez()
            )
        except Exception as e:
            raise self._link_error(e) from e
        self.link_state, self.link_detail = LinkState.OK, ""
        devices = []
        for address, (device, adv) in found.items():
            info = parse_advertisement(address, adv)
            if info is not None:
                self._seen[info["serial"]] = (device, info)
                devices.append(info)
        return devices

    async def discover(self) -> list[dict]:
        return await self._scan(self.opts["scan_timeout_s"])

    async def _locate(self, ref: dict):
        entry = self._seen.get(ref["serial"])
        if entry is None:
            await self._scan(self.opts["scan_timeout_s"])
            entry = self._seen.get(ref["serial"])
        if entry is None:
            raise DriverError(ResultCode.NOT_FOUND, f"{ref['serial']} is not advertising")
        hw = ref.get("hardware_id")
        if hw and hw.upper() != entry[1]["hardware_id"]:
            raise DriverError(ResultCode.NOT_FOUND, f"{ref['serial']} has another hardware id")
        return entry

    async def execute(self, op: dict, ctx: OpContext) -> dict:
        request = build_request(op, self.gateway_uid)
        device, info = await self._locate(op["device"])
        async with self._slots:
            try:
                async with self.client_cls(
                    device, timeout=self.opts["connect_timeout_s"]
                ) as client:
                    await client.write_gatt_char(CONTROL_CHAR_UUID, request, response=True)
                    if op["kind"] == OpKind.LOAD_IMAGE:
                        await self._send_image(client, ctx)
                    raw = await client.read_gatt_char(ACK_CHAR_UUID)
            except DriverError:
                raise
            except Exception as e:
                raise self._link_error(e) from e
        return self._acknowledged(op, info, bytes(raw))

    async def _send_image(self, client, ctx: OpContext) -> None:
        if ctx.image is None:
            raise DriverError(ResultCode.INTERNAL, "no image to send")
        total, done, size = ctx.image.stat().st_size, 0, self.opts["chunk_size"]
        with ctx.image.open("rb") as f:
            while chunk := f.read(size):
                await client.write_gatt_char(IMAGE_CHAR_UUID, chunk, response=True)
                done += len(chunk)
                ctx.progress(done, total)

    def _acknowledged(self, op: dict, info: dict, raw: bytes) -> dict:
        try:
            ack = json.loads(raw)
        except ValueError:
            raise DriverError(ResultCode.FAILED, "unreadable acknowledgement", info) from None
        if not isinstance(ack, dict) or ack.get("id") != op["op"]:
            raise DriverError(ResultCode.FAILED, "acknowledgement for another request", info)
        if "state" in ack and ack["state"] in ADV_STATES.values():
            info["state"] = ack["state"]
        if isinstance(ack.get("fw"), str) and 0 < len(ack["fw"]) <= 64 and ack["fw"].isprintable():
            info["firmware"] = ack["fw"]
        if ack.get("ok") is not True:
            reason = ack.get("err") if isinstance(ack.get("err"), str) else "device refused"
            raise DriverError(ResultCode.REJECTED, reason[:500] or "device refused", dict(info))
        return dict(info)
