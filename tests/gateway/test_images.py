"""Image downloads: token, resume with Range after a cut, SHA-256 check, the cache."""

import asyncio
import hashlib
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.codes import ResultCode
from gateway.drivers import DriverError
from gateway.images import ImageCache

IMAGE = bytes(range(256)) * 1000  # 256,000 bytes
SHA = hashlib.sha256(IMAGE).hexdigest()


class Portal(BaseHTTPRequestHandler):
    cut_first_at = None  # bytes sent before the first response breaks off
    wrong_range_start = None  # answer a Range with a 206 from this offset instead
    answer_416 = False  # refuse the next Range with 416
    slow_s = 0.0  # pause between 16 KiB blocks
    requests: list

    def do_GET(self):
        self.requests.append((self.headers.get("Authorization"), self.headers.get("Range")))
        if self.headers.get("Authorization") != "Bearer good-token":
            self.send_error(403)
            return
        start = 0
        if rng := self.headers.get("Range"):
            if Portal.answer_416:
                Portal.answer_416 = False
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(IMAGE)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if Portal.wrong_range_start is not None:
                start, Portal.wrong_range_start = Portal.wrong_range_start, None
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
        for i in range(0, len(body), 16384):
            try:
                self.wfile.write(body[i : i + 16384])
            except (BrokenPipeError, ConnectionResetError):
                return
            time.sleep(Portal.slow_s)

    def log_message(self, *args):
        pass


@pytest.fixture
def portal():
    Portal.requests, Portal.cut_first_at, Portal.slow_s = [], None, 0.0
    Portal.wrong_range_start, Portal.answer_416 = None, False
    server = ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/image"
    server.shutdown()
    server.server_close()
    thread.join()


def cache_in(path, **options):
    cache = ImageCache(path, **{"timeout_s": 5, **options})
    cache.backoff_s = (0, 0, 0)  # no waiting between attempts in tests
    return cache


def _fetch(cache, url, token="good-token", sha=SHA, size=None, progress=None):
    size = len(IMAGE) if size is None else size
    return asyncio.run(cache.fetch(url, sha, size, token, progress or (lambda d, t: None)))


def test_download_resumes_after_a_cut(tmp_path, portal):
    Portal.cut_first_at = 100_000
    seen = []
    path = _fetch(cache_in(tmp_path), portal, progress=lambda d, t: seen.append(d))
    assert path.read_bytes() == IMAGE and path.name == SHA
    assert Portal.requests == [("Bearer good-token", None), ("Bearer good-token", "bytes=100000-")]
    assert seen[-1] == len(IMAGE)
    assert 100_000 in seen  # the resume reports where it starts


def test_a_later_operation_resumes_the_part_file_an_earlier_one_left(tmp_path, portal):
    (tmp_path / f"{SHA}.part").write_bytes(IMAGE[:123_456])
    path = _fetch(cache_in(tmp_path), portal)
    assert path.read_bytes() == IMAGE
    assert Portal.requests == [("Bearer good-token", "bytes=123456-")]


def test_a_range_that_does_not_continue_the_file_is_never_appended(tmp_path, portal):
    (tmp_path / f"{SHA}.part").write_bytes(IMAGE[:1000])
    Portal.wrong_range_start = 5000  # a confused proxy, say
    path = _fetch(cache_in(tmp_path), portal)
    assert path.read_bytes() == IMAGE
    assert [r for _, r in Portal.requests] == ["bytes=1000-", "bytes=1000-"]


def test_416_starts_over(tmp_path, portal):
    (tmp_path / f"{SHA}.part").write_bytes(b"x" * 1000)  # not a prefix of this image
    Portal.answer_416 = True
    path = _fetch(cache_in(tmp_path), portal)
    assert path.read_bytes() == IMAGE
    assert [r for _, r in Portal.requests] == ["bytes=1000-", None]


def test_cached_image_is_not_downloaded_again(tmp_path, portal):
    cache = cache_in(tmp_path)
    _fetch(cache, portal)
    _fetch(cache, portal)
    assert len(Portal.requests) == 1


def test_many_operations_at_once_download_once(tmp_path, portal):
    Portal.slow_s = 0.002
    cache = cache_in(tmp_path)
    done = []

    async def many():
        return await asyncio.gather(
            *(
                cache.fetch(portal, SHA, len(IMAGE), "good-token", lambda d, t: done.append(d))
                for _ in range(8)
            )
        )

    paths = asyncio.run(many())
    assert len(set(paths)) == 1 and len(Portal.requests) == 1


def test_a_damaged_cached_image_is_fetched_again(tmp_path, portal):
    cache = cache_in(tmp_path)
    path = _fetch(cache, portal)
    damaged = bytearray(path.read_bytes())
    damaged[10] ^= 0xFF
    path.write_bytes(bytes(damaged))
    assert _fetch(cache, portal).read_bytes() == IMAGE
    assert len(Portal.requests) == 2


def test_cancelled_download_stops_and_lets_the_next_one_resume(tmp_path, portal):
    """The agent's timeout cancels the operation: its thread stops writing before
    another operation may touch the same .part file."""
    Portal.slow_s = 0.01  # ~0.16 s for the image
    cache = cache_in(tmp_path)

    async def cancel_midway():
        task = asyncio.create_task(
            cache.fetch(portal, SHA, len(IMAGE), "good-token", lambda d, t: None)
        )
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    Portal.slow_s = 0.0
    path = _fetch(cache, portal)
    assert path.read_bytes() == IMAGE  # no bytes of the stopped thread interleaved
    assert len(Portal.requests) == 2
    resumed_from = int(Portal.requests[1][1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_from < len(IMAGE)  # it went on from the cancelled one's bytes


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
        _fetch(cache_in(tmp_path), portal, **kwargs)
    assert caught.value.code is code
    assert not list(tmp_path.glob("*.part"))


def test_a_refused_token_is_not_retried(tmp_path, portal):
    with pytest.raises(DriverError):
        _fetch(cache_in(tmp_path), portal, token="bad")
    assert len(Portal.requests) == 1


def test_unreachable_portal(tmp_path):
    with pytest.raises(DriverError) as caught:
        _fetch(cache_in(tmp_path, timeout_s=1), "http://127.0.0.1:9/image")
    assert caught.value.code is ResultCode.DOWNLOAD_FAILED


def test_eviction_keeps_recent_and_protected_images(tmp_path):
    cache = cache_in(tmp_path, keep=1, protect_s=3600)
    names = [f"{n:064x}" for n in range(3)]
    for age, name in zip((7200, 10, 0), names, strict=True):
        path = tmp_path / name
        path.write_bytes(b"x")
        os.utime(path, (time.time() - age, time.time() - age))
    cache._evict(keep=tmp_path / names[2])
    assert sorted(p.name for p in tmp_path.iterdir()) == names[1:]  # the old one went
