"""Image downloads: token, resume with Range after a cut, SHA-256 check, the cache."""

import asyncio
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.codes import ResultCode
from gateway.drivers import DriverError
from gateway.images import ImageCache

IMAGE = bytes(range(256)) * 1000  # 256,000 bytes
SHA = hashlib.sha256(IMAGE).hexdigest()


class Portal(BaseHTTPRequestHandler):
    cut_first_at = None  # bytes sent before the first response breaks off
    requests: list

    def do_GET(self):
        self.requests.append((self.headers.get("Authorization"), self.headers.get("Range")))
        if self.headers.get("Authorization") != "Bearer good-token":
            self.send_error(403)
            return
        start = 0
        if rng := self.headers.get("Range"):
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(IMAGE) - 1}/{len(IMAGE)}")
        else:
            self.send_response(200)
        body = IMAGE[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if Portal.cut_first_at is not None:
            cut, Portal.cut_first_at = Portal.cut_first_at, None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def portal():
    Portal.requests, Portal.cut_first_at = [], None
    server = ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/image"
    server.shutdown()
    server.server_close()
    thread.join()


def _fetch(cache, url, token="good-token", sha=SHA, size=None, progress=None):
    size = len(IMAGE) if size is None else size
    return asyncio.run(cache.fetch(url, sha, size, token, progress or (lambda d, t: None)))


def test_download_resumes_after_a_cut(tmp_path, portal):
    Portal.cut_first_at = 100_000
    seen = []
    path = _fetch(ImageCache(tmp_path, timeout_s=5), portal, progress=lambda d, t: seen.append(d))
    assert path.read_bytes() == IMAGE and path.name == SHA
    assert Portal.requests == [("Bearer good-token", None), ("Bearer good-token", "bytes=100000-")]
    assert seen[-1] == len(IMAGE)


def test_cached_image_is_not_downloaded_again(tmp_path, portal):
    cache = ImageCache(tmp_path)
    _fetch(cache, portal)
    _fetch(cache, portal)
    assert len(Portal.requests) == 1


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"token": "bad"}, ResultCode.DOWNLOAD_FAILED),
        ({"sha": "0" * 64}, ResultCode.CHECKSUM_MISMATCH),
        ({"size": 1000}, ResultCode.CHECKSUM_MISMATCH),
    ],
)
def test_refusals(tmp_path, portal, kwargs, code):
    with pytest.raises(DriverError) as caught:
        _fetch(ImageCache(tmp_path), portal, **kwargs)
    assert caught.value.code is code
    assert not list(tmp_path.glob("*.part"))


def test_unreachable_portal(tmp_path):
    with pytest.raises(DriverError) as caught:
        _fetch(ImageCache(tmp_path, timeout_s=1), "http://127.0.0.1:9/image")
    assert caught.value.code is ResultCode.DOWNLOAD_FAILED
