"""Firmware images: download from the portal, resumable, verified, cached by SHA-256.

A gateway that loads one image onto 200 devices downloads it once: operations for the
same SHA-256 wait for one another, and the second finds the verified file in the cache.
An interrupted download resumes from its ``.part`` file with an HTTP Range request — in
the same operation (up to ``ATTEMPTS`` tries, backing off) or in a later one, since the
``.part`` file stays. A ``206`` whose ``Content-Range`` does not start where the file
stopped is not appended; ``416`` (the portal has no such range: the ``.part`` file does
not belong to this image) starts over. The finished file is renamed into place only
after its size and SHA-256 match the operation's (docs/gateway-protocol.md §10).

The download runs in a worker thread. When its operation times out or is cancelled,
the thread is told to stop and gives up the image's file lock before another operation
may write the same ``.part`` file, so two downloads never interleave their bytes.

The cache keeps the ``keep`` most recently used images, but never evicts one used less
than ``protect_s`` ago (the agent's image timeout): an operation that fetched an image
is done with it by then. A cached image is hashed again only when its file changed
since it was last verified.
"""

import asyncio
import contextlib
import hashlib
import http.client
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from gateway.codes import ResultCode
from gateway.drivers import DriverError

CHUNK = 64 * 1024
ATTEMPTS = 4  # each attempt resumes where the last one stopped
BACKOFF_S = (0.5, 2.0, 5.0)  # waits between attempts
FINAL_STATUSES = (401, 403, 404, 410)  # the portal refuses: retrying cannot help
CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


class Stopped(Exception):
    """The operation gave up waiting (timeout, cancel): the download thread stops."""


class ImageCache:
    def __init__(
        self, directory: Path, *, keep: int = 4, timeout_s: float = 30, protect_s: float = 3600
    ):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.timeout_s = timeout_s
        self.protect_s = protect_s
        self.backoff_s = BACKOFF_S
        self._locks: dict[str, asyncio.Lock] = {}
        self._file_locks: dict[str, threading.Lock] = {}
        self._verified: dict[str, tuple[int, int]] = {}  # sha256 → (size, mtime_ns)

    async def fetch(
        self, url: str, sha256: str, size: int, token: str, progress: Callable[[int, int], None]
    ) -> Path:
        """The verified image; ``progress`` is called from a worker thread."""
        final = self.directory / sha256
        async with self._locks.setdefault(sha256, asyncio.Lock()):
            if await asyncio.to_thread(self._cached, final, sha256, size):
                progress(size, size)
                return final
            stop = threading.Event()
            try:
                await asyncio.shield(
                    asyncio.to_thread(self._download, url, sha256, size, token, progress, stop)
                )
            except asyncio.CancelledError:
                stop.set()  # the thread sees it at its next chunk and lets go of the file
                raise
        self._evict(keep=final)
        return final

    def _cached(self, final: Path, sha256: str, size: int) -> bool:
        """Is a good copy in the cache? Marks it used (its mtime), for eviction."""
        try:
            stat = final.stat()
        except FileNotFoundError:
            return False
        if stat.st_size != size:
            final.unlink(missing_ok=True)
            return False
        changed = self._verified.get(sha256) != (stat.st_size, stat.st_mtime_ns)
        if changed and _sha256_of(final) != sha256:
            final.unlink(missing_ok=True)  # damaged on disk: download it again
            return False
        os.utime(final)
        self._verified[sha256] = (size, final.stat().st_mtime_ns)
        return True

    def _download(self, url, sha256, size, token, progress, stop: threading.Event) -> None:
        with contextlib.suppress(Stopped):  # nobody waits for this thread any more
            self._download_locked(url, sha256, size, token, progress, stop)

    def _download_locked(self, url, sha256, size, token, progress, stop) -> None:
        with self._file_locks.setdefault(sha256, threading.Lock()):
            part = self.directory / f"{sha256}.part"
            last_error = ""
            for attempt in range(ATTEMPTS):
                if attempt and stop.wait(self.backoff_s[min(attempt, len(self.backoff_s)) - 1]):
                    raise Stopped
                have = part.stat().st_size if part.exists() else 0
                if have >= size:
                    break
                try:
                    self._get(url, token, part, have, size, progress, stop)
                    if part.stat().st_size >= size:
                        break
                    last_error = "the connection closed early"
                except urllib.error.HTTPError as e:
                    e.close()  # it holds the connection
                    if e.code in FINAL_STATUSES:
                        raise DriverError(
                            ResultCode.DOWNLOAD_FAILED, f"portal said HTTP {e.code}"
                        ) from None
                    if e.code == 416:  # our .part is not a prefix of this image
                        part.unlink(missing_ok=True)
                    last_error = f"HTTP {e.code}"
                except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
                    last_error = str(getattr(e, "reason", e) or type(e).__name__)[:200]
            else:
                raise DriverError(ResultCode.DOWNLOAD_FAILED, f"download incomplete: {last_error}")
            if part.stat().st_size != size or _sha256_of(part) != sha256:
                part.unlink(missing_ok=True)
                raise DriverError(
                    ResultCode.CHECKSUM_MISMATCH, "image size or SHA-256 does not match"
                )
            final = self.directory / sha256
            os.replace(part, final)
            self._verified[sha256] = (size, final.stat().st_mtime_ns)

    def _get(self, url, token, part: Path, have: int, size: int, progress, stop) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        if have:
            headers["Range"] = f"bytes={have}-"
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            mode = "ab"
            if have and response.status == 206:
                start = _range_start(response.headers.get("Content-Range", ""))
                if start == 0:  # the whole image as one range
                    mode, have = "wb", 0
                elif start != have:  # not the continuation of our file: never append it
                    raise ConnectionError(f"the portal sent bytes from {start}, not {have}")
            elif have:  # the server ignored the Range: the body is the whole image
                mode, have = "wb", 0
            if have:
                progress(have, size)
            with part.open(mode) as f:
                while block := response.read(CHUNK):
                    if stop.is_set():
                        raise Stopped
                    have += len(block)
                    if have > size:
                        f.close()
                        part.unlink(missing_ok=True)
                        raise DriverError(
                            ResultCode.CHECKSUM_MISMATCH, "image larger than announced"
                        )
                    f.write(block)
                    progress(have, size)

    def _evict(self, keep: Path) -> None:
        images = sorted(
            (p for p in self.directory.iterdir() if len(p.name) == 64),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        protected_since = time.time() - self.protect_s
        for old in images[self.keep :]:
            if old != keep and old.stat().st_mtime < protected_since:
                old.unlink(missing_ok=True)
                self._verified.pop(old.name, None)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _range_start(header: str) -> int | None:
    match = CONTENT_RANGE.match(header)
    return int(match[1]) if match else None
