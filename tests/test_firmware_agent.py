"""The real agent against the real image endpoint: a Django live server serves images, a
gateway agent (``python -m gateway run``, simulated devices) gets ``load_image`` commands
through Mosquitto, and a TCP proxy between them cuts the first download mid-way.

What it shows: the agent resumes from exactly the byte where the cut left it (the bytes
the portal served add up to one image), an image loaded onto three devices of one
gateway is downloaded once, ``download`` and ``transfer`` progress is reported, and an
image whose stored bytes were damaged fails its SHA-256 check (``checksum_mismatch``).
"""

import io
import json
import socket
import threading
import time
import uuid

import pytest

from firmware import tokens
from firmware.models import firmware_storage
from gateway.protocol import MsgType
from tests.factories import make_firmware_image, make_organization
from tests.gateway.portal_double import PortalDouble, start_agent

pytestmark = [
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("firmware_storage"),
]

DEVICES = 3
PAYLOAD = bytes(range(256)) * 2400  # ~600 KB: several chunks each way
CUT_AT = 200_000


class CuttingProxy:
    """Forwards HTTP to the portal; breaks the first response off after ``cut`` body bytes.

    ``log`` has one entry per request: its Range header, the status, and how many body
    bytes the portal's answer carried through to the gateway."""

    def __init__(self, port: int, cut: int):
        self.port, self.cut = port, cut
        self.log: list[dict] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client):
        entry = {"range": None, "status": None, "body": 0}
        cut = self.cut if not self.log else None
        self.log.append(entry)
        upstream = socket.create_connection(("127.0.0.1", self.port))
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                request += client.recv(65536)
            for line in request.decode("latin-1").split("\r\n"):
                if line.lower().startswith("range:"):
                    entry["range"] = line.split(":", 1)[1].strip()
            upstream.sendall(request)
            head = b""
            while True:
                data = upstream.recv(65536)
                if not data:
                    return
                if entry["status"] is None:
                    head += data
                    if b"\r\n\r\n" not in head:
                        continue
                    headers, data = head.split(b"\r\n\r\n", 1)
                    entry["status"] = int(headers.split()[1])
                    client.sendall(headers + b"\r\n\r\n")
                if cut is not None and entry["body"] + len(data) >= cut:
                    client.sendall(data[: cut - entry["body"]])
                    entry["body"] = cut
                    return  # the line goes dead mid-image
                client.sendall(data)
                entry["body"] += len(data)
        finally:
            upstream.close()
            client.close()

    def close(self):
        self.listener.close()


@pytest.fixture
def agent(tmp_path):
    uid = f"fw-{uuid.uuid4().hex[:12]}"
    secret = uuid.uuid4().hex
    config = {
        "gateway_uid": uid,
        "secret": secret,
        "state_dir": str(tmp_path / "state"),
        "broker_url": "mqtt://127.0.0.1:1883",
        "reconnect_min_s": 1,
        "reconnect_max_s": 2,
        "driver_options": {"devices": DEVICES, "latency_ms": 2, "transfer_bps": 20_000_000},
    }
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(config))
    portal = PortalDouble(uid, secret)
    process = start_agent(path)
    try:
        portal.wait_for(lambda m: m.type is MsgType.STATUS and m.body["state"] == "online")
        yield portal, tmp_path / "state" / "images"
    finally:
        process.terminate()
        process.wait(15)
        portal.clear_retained()
        portal.close()


def serial(portal, n):
    return f"SIM-{portal.uid}-{n:05d}"


def collect(portal, op_ids, timeout=60):
    """Results and progress items until every operation in ``op_ids`` has its result."""
    results, progress = {}, []
    deadline = time.monotonic() + timeout
    while not op_ids <= results.keys():
        msg = portal.wait_for(
            lambda m: m.type in (MsgType.RESULT, MsgType.PROGRESS), deadline - time.monotonic()
        )
        if msg.type is MsgType.RESULT:
            for item in msg.items:
                results.setdefault(item["op"], item)
        else:
            progress.extend(msg.items)
    return results, progress


def load_ops(portal, image, ops):
    return [
        {
            "op": op,
            "kind": "load_image",
            "device": {"serial": serial(portal, n)},
            "params": tokens.load_image_params(image, op),
        }
        for n, op in ops
    ]


def test_a_cut_download_resumes_once_per_gateway_and_a_damaged_image_is_refused(
    agent, live_server, settings
):
    portal, cache_dir = agent
    proxy = CuttingProxy(int(live_server.url.rsplit(":", 1)[1]), CUT_AT)
    settings.FIRMWARE = {**settings.FIRMWARE, "PUBLIC_URL": proxy.url}
    try:
        org = make_organization()
        image = make_firmware_image(org, "2.0.0", payload=PAYLOAD)
        provision = [
            {"op": f"prov-{n}", "kind": "provision", "device": {"serial": serial(portal, n)}}
            for n in range(1, DEVICES + 1)
        ]
        portal.command(provision)
        provisioned, _ = collect(portal, {op["op"] for op in provision})
        assert all(r["ok"] for r in provisioned.values()), provisioned

        ops = [(n, f"load-{n}-{uuid.uuid4().hex[:8]}") for n in range(1, DEVICES + 1)]
        portal.command(load_ops(portal, image, ops))
        results, progress = collect(portal, {op for _, op in ops})

        for _, op in ops:
            assert results[op]["ok"], results[op]
            assert results[op]["device"]["firmware"] == "2.0.0"
        # The portal served the image once for three devices: a first answer cut at
        # CUT_AT bytes, then exactly the rest from there.
        assert [(e["range"], e["status"]) for e in proxy.log] == [
            (None, 200),
            (f"bytes={CUT_AT}-", 206),
        ]
        assert proxy.log[0]["body"] == CUT_AT
        assert proxy.log[1]["body"] == image.size - CUT_AT
        assert sum(e["body"] for e in proxy.log) == image.size
        # Progress: every load reports its download (a cache hit at once) and its
        # transfer to the device, both to 100 %; the download resumed past the cut.
        for _, op in ops:
            phases = {(p["phase"], p["percent"]) for p in progress if p["op"] == op}
            assert ("download", 100) in phases and ("transfer", 100) in phases, phases
        downloaded = [p["bytes"] for p in progress if p["phase"] == "download"]
        assert any(0 < b < image.size for b in downloaded)
        assert all(p["total"] == image.size for p in progress)

        # A damaged copy in storage: same size, one byte flipped.
        damaged = make_firmware_image(org, "3.0.0", payload=PAYLOAD[::-1])
        storage = firmware_storage()
        with storage.open(damaged.file.name) as f:
            data = bytearray(f.read())
        data[1000] ^= 0xFF
        storage.delete(damaged.file.name)
        storage.save(damaged.file.name, io.BytesIO(bytes(data)))
        bad_op = f"load-bad-{uuid.uuid4().hex[:8]}"
        portal.command(load_ops(portal, damaged, [(1, bad_op)]))
        results, _ = collect(portal, {bad_op})
        assert results[bad_op]["code"] == "checksum_mismatch", results[bad_op]
        assert not list(cache_dir.glob("*.part"))  # the bad bytes are gone, not cached
        assert not (cache_dir / damaged.sha256).exists()
        assert portal.rejected == []
    finally:
        proxy.close()
