"""Leader election: of several copies of a periodic process, one acts at a time.

A deployment may run the reconciler twice (two machines, or a restart that overlaps
the old process). That was always *correct* — every reconciler step is a conditional
UPDATE — but two leaders double the queries and race each other for the same rows.
So a periodic loop asks its ``Leader`` before every pass; only the holder acts, the
others stand by and take over when it dies.

PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) held on a
connection of its own. The lock lives exactly as long as that session: when the holder
dies, even by SIGKILL, the kernel closes its socket, the server ends the session and
the next ``acquire()`` elsewhere gets the lock. No lease, no clocks. Django's own
connection is not used for it: ``close_old_connections`` and ``CONN_MAX_AGE`` close and
reopen that one between passes, which would drop the lock without a word. A holder
whose *machine* vanishes (no FIN) is noticed by TCP keepalives: the client side is set
here, the server side is ``tcp_keepalives_*`` in postgresql.conf (docs/deploy.md).

SQLite: the database is a file on this one machine, so the same "held while the
process lives" lock is an OS lock (``flock``) on a file beside it; the kernel releases
it when the process dies. The same semantics as the advisory lock, without a lease
table and its clock.

Leadership can be lost (PostgreSQL restarted, the network broke): ``acquire()`` checks
the lock's session before every pass and answers False once it is gone. A pass already
under way finishes — harmless, because leadership only saves work: correctness never
depended on it.
"""

import contextlib
import fcntl
import hashlib
import logging
import os
from pathlib import Path

from django.db import DatabaseError, connections

log = logging.getLogger(__name__)

# The lock session must notice a dead server within seconds, not the two hours of the
# kernel's keepalive default (idle connection) or the ~15 minutes of TCP retransmission
# (a check in flight): otherwise a leader cut off from PostgreSQL would keep acting
# after the server has given the lock to a standby.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms
}


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    digest = hashlib.sha256(f"fleetgate:leader:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Leader:
    """``acquire()`` before each pass: True while this process is the one that acts."""

    def __init__(self, name: str, alias: str = "default"):
        self.name, self.alias = name, alias
        self._session = None  # PostgreSQL: the DatabaseWrapper whose session holds the lock
        self._file = None  # SQLite: the open, locked file
        self.leading = False

    def acquire(self) -> bool:
        vendor = connections[self.alias].vendor
        if vendor == "postgresql":
            self.leading = self._acquire_advisory()
        elif vendor == "sqlite":
            self.leading = self._acquire_file()
        else:
            raise NotImplementedError(f"no leader election for {vendor}")
        return self.leading

    def release(self) -> None:
        """Give the lock up now (a clean stop), so a standby need not wait for a pass."""
        if self._session is not None:
            with contextlib.suppress(DatabaseError):
                if self.leading:
                    # Unlock before closing: the server ends a closed session a moment
                    # later, and a standby asking in between would still find it taken.
                    with self._session.cursor() as cursor:
                        cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_key(self.name)])
                self._session.close()
            self._session = None
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None
        self.leading = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    # -- PostgreSQL -------------------------------------------------------------------

    def _acquire_advisory(self) -> bool:
        try:
            if self._session is None:
                session = connections.create_connection(self.alias)
                settings = session.settings_dict
                session.settings_dict = {
                    **settings,
                    "OPTIONS": {**settings.get("OPTIONS", {}), **KEEPALIVES},
                }
                self._session = session
            with self._session.cursor() as cursor:
                if self.leading:
                    cursor.execute("SELECT 1")  # the session, and so the lock, is alive
                    return True
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_key(self.name)])
                return bool(cursor.fetchone()[0])
        except DatabaseError as exc:
            if self.leading:
                log.warning("Lost the %s leader lock: %s", self.name, exc)
            self.release()
            return False

    # -- SQLite -----------------------------------------------------------------------

    def _acquire_file(self) -> bool:
        if self._file is not None:
            return True
        database = Path(connections[self.alias].settings_dict["NAME"]).resolve()
        handle = open(f"{database}.{self.name}.leader", "a+")  # noqa: SIM115 (kept open)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")  # who holds it, for a curious operator
        handle.flush()
        self._file = handle
        return True
