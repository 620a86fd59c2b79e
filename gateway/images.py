"""Firmware images: download from the portal, resumable, verified, cached by SHA-256.

A gateway that loads one image onto 200 devices downloads it once. An interrupted
download resumes from its ``.part`` file with an HTTP Range request; the finished file
is renamed into place only after its size and SHA-256 match the operation's.
"""

import asyncio
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from gateway.codes import ResultCode
from gateway.drivers import DriverError

CHUNK = 64 * 1024
ATTEMPTS = 4  # each attempt resumes where the last one stopped


class ImageCache:
    def __init__(self, directory: Path, *, keep: int = 4, timeout_s: float = 30):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.timeout_s = timeout_s
        self._locks: dict[str, asyncio.Lock] = {}

    async def fetch(
        self, url: str, sha256: str, size: int, token: str, progress: Callable[[int, int], None]
    ) -> Path:
        """The verified image; ``progress`` is called from a worker thread."""
        final = self.directory / sha256
        async with self._locks.setdefault(sha256, asyncio.Lock()):
            if final.exists() and final.stat().st_size == size:
                progress(size, size)
                return final
            await asyncio.to_thread(self._download, url, sha256, size, token, progress)
        self._evict(keep=final)
        return final

    def _download(self, url, sha256, size, token, progress) -> None:
        part = self.directory / f"{sha256}.part"
        last_error = ""
        for _ in range(ATTEMPTS):
            have = part.stat().st_size if part.exists() else 0
            if have >= size:
                break
            try:
                self._get(url, token, part, have, size, progress)
            except urllib.error.HTTPError as e:
                e.close()  # it holds the connection
                if e.code in (401, 403, 404, 410):
                    raise DriverError(
                        ResultCode.DOWNLOAD_FAILED, f"portal said HTTP {e.code}"
                    ) from None
                last_error = f"HTTP {e.code}"
            except (OSError, urllib.error.URLError) as e:
                last_error = str(getattr(e, "reason", e))[:200]
        else:
            raise DriverError(ResultCode.DOWNLOAD_FAILED, f"download incomplete: {last_error}")
        digest = hashlib.sha256()
        with part.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        if part.stat().st_size != size or digest.hexdigest() != sha256:
            part.unlink(missing_ok=True)
            raise DriverError(ResultCode.CHECKSUM_MISMATCH, "image size or SHA-256 does not match")
        os.replace(part, self.directory / sha256)

    def _get(self, url, token, part: Path, have: int, size: int, progress) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        if have:
            headers["Range"] = f"bytes={have}-"
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            mode = "ab"
            if have and response.status != 206:  # server ignored the Range: start over
                mode, have = "wb", 0
            with part.open(mode) as f:
                while block := response.read(CHUNK):
                    have += len(block)
                    if have > size:
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
        for old in images[self.keep :]:
            if old != keep:
                old.unlink(missing_ok=True)
