"""Whom a gateway speaks for: the bridge's ``foreign_device`` rule, item by item.

Device identity is per organization (serial number; hardware ids unique within an
organization). A gateway speaks for devices of its organization bound to it or to no
gateway, and answers only operations sent to it. ``DeviceIndex`` loads a batch's
devices by set, in a few queries whatever the batch size; ``owner_rule`` judges each
item; ``gateway.protocol.drop_foreign`` splits the messages.
"""

from collections import defaultdict

from devices.gateway_directory import GatewayRef
from devices.models import Device, Operation
from gateway.protocol import Message, MsgType, device_refs, item_devices

CHUNK = 500  # ids per IN (...) clause; SQLite allows 999 variables


def chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


class DeviceIndex:
    """The batch's devices, looked up by set: a few queries whatever the batch size.

    Device identity is per organization: a serial number or a hardware id names a
    device of the speaking gateway's organization, never one of another tenant.
    """

    FIELDS = ("id", "organization_id", "serial_number", "hardware_id", "gateway_id", "state")

    def __init__(self, serials: dict[int, set[str]], hardware_ids: dict[int, set[str]]):
        self.by_serial: dict[tuple[int, str], dict] = {}
        self.by_hardware: dict[tuple[int, str], dict] = {}
        for org_id, names in serials.items():
            for chunk in chunks(sorted(names)):
                rows = Device.objects.filter(organization_id=org_id, serial_number__in=chunk)
                for row in rows.values(*self.FIELDS):
                    self.add(row)
        for org_id, names in hardware_ids.items():
            missing = sorted(h for h in names if (org_id, h) not in self.by_hardware)
            for chunk in chunks(missing):
                rows = Device.objects.filter(organization_id=org_id, hardware_id__in=chunk)
                for row in rows.values(*self.FIELDS):
                    self.by_hardware[(org_id, row["hardware_id"])] = row

    def add(self, row: dict) -> None:
        self.by_serial[(row["organization_id"], row["serial_number"])] = row
        if row["hardware_id"]:
            self.by_hardware[(row["organization_id"], row["hardware_id"])] = row

    def hardware_taken(self, organization_id: int, hardware_id: str | None) -> bool:
        return bool(hardware_id) and (organization_id, hardware_id) in self.by_hardware

    def owns_device(self, gateway: GatewayRef, ref: dict) -> bool:
        """Unknown, or bound to this gateway (or to none) in its organization; a hardware
        id already another device's, or one bound to another gateway, is not its to use."""
        mine = (None, gateway.id)
        row = self.by_serial.get((gateway.organization_id, ref["serial"]))
        if row is not None and row["gateway_id"] not in mine:
            return False
        hardware_id = Device.normalise_hardware_id(ref.get("hardware_id"))
        other = self.by_hardware.get((gateway.organization_id, hardware_id))
        return other is None or (
            other["serial_number"] == ref["serial"] and other["gateway_id"] in mine
        )


def operation_gateways(messages: list[tuple[GatewayRef, Message]]) -> dict[str, int | None]:
    """Wire operation id -> the gateway its operation was sent to (results, progress).

    Ids the portal did not make, or whose operation is gone, are left out: nobody's.
    """
    from devices.operations import parse_wire_id  # operations imports this module

    op_ids: dict = defaultdict(set)  # operation uid -> the wire ids naming it
    for _gateway, msg in messages:
        if msg.type in (MsgType.RESULT, MsgType.PROGRESS):
            for item in msg.items:
                if parsed := parse_wire_id(item["op"]):
                    op_ids[parsed[0]].add(item["op"])
    sent_to: dict[str, int | None] = {}
    for chunk in chunks(list(op_ids)):
        rows = Operation.objects.filter(uid__in=chunk).values_list("uid", "gateway_id")
        for uid, gateway_id in rows:
            sent_to.update(dict.fromkeys(op_ids[uid], gateway_id))
    return sent_to


def owner_rule(
    index: DeviceIndex, sent_to: dict[str, int | None], gateway: GatewayRef, msg_type: MsgType
):
    """``owns(item)`` for one gateway's items of one message type."""

    def owns(item: dict) -> bool:
        if "op" in item and sent_to.get(item["op"], gateway.id) != gateway.id:
            return False  # a result or progress for an operation sent to another gateway
        return all(index.owns_device(gateway, ref) for ref in item_devices(msg_type, item))

    return owns


def wanted(messages: list[tuple[GatewayRef, Message]]):
    serials: dict[int, set[str]] = defaultdict(set)
    hardware_ids: dict[int, set[str]] = defaultdict(set)
    for gateway, msg in messages:
        for ref in device_refs(msg):
            serials[gateway.organization_id].add(ref["serial"])
            if hardware_id := Device.normalise_hardware_id(ref.get("hardware_id")):
                hardware_ids[gateway.organization_id].add(hardware_id)
    return serials, hardware_ids


def describe(msg_type: MsgType, item: dict) -> str:
    refs = item_devices(msg_type, item)
    if refs:
        return f"device {refs[0]['serial']!r}" + (
            f" ({refs[0]['hardware_id']})" if refs[0].get("hardware_id") else ""
        )
    return f"operation {item.get('op')!r}"
