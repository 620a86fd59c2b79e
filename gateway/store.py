"""The agent's memory on disk: operations it accepted, their results, and device state.

SQLite in WAL mode with ``synchronous=FULL``: every transaction is atomic and survives
a power cut, which a gateway box will see. Callers group writes (one transaction per
command batch or result batch), so durability costs one sync per batch, not per device.
One connection shared by the MQTT thread and the event loop, guarded by a lock.

Secrets: an operation is stored as received, so its access key or download token only
ever reaches the disk sealed (``params.sealed``, gateway.protocol.seal_params); once the
operation finished even that is removed from the row, with ``secure_delete`` zeroing the
freed bytes and a truncating checkpoint clearing the write-ahead log's copy.
"""

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS ops (
    op_id   TEXT PRIMARY KEY,
    op      TEXT NOT NULL,            -- the operation as received (JSON)
    result  TEXT,                     -- NULL while pending; the result item (JSON)
    sent    INTEGER NOT NULL DEFAULT 0,  -- 1 once the broker acknowledged the result
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ops_unsent ON ops (updated) WHERE result IS NOT NULL AND sent = 0;
CREATE INDEX IF NOT EXISTS ops_pending ON ops (updated) WHERE result IS NULL;
CREATE TABLE IF NOT EXISTS kv (
    ns    TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (ns, key)
);
"""


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")  # freed bytes are zeroed, not left
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()
        self._depth = 0
        self._scrubbed = False

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write; nested uses join the outer transaction."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._db
            except BaseException:
                self._depth -= 1
                if outer:
                    self._scrubbed = False
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._db.execute("COMMIT")
                if self._scrubbed:
                    self._scrubbed = False
                    # The write-ahead log still holds the pages as they were before.
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- operations ---------------------------------------------------------------------

    def accept(self, ops: list[dict]) -> tuple[list[dict], list[dict]]:
        """Record new operations; returns (new ops to run, stored results to repeat).

        An id already running is in neither list: its result follows when it is done.
        """
        now = time.time()
        with self.transaction() as db:
            known: dict[str, str | None] = {}
            for i in range(0, len(ops), 500):  # SQLite's bound-parameter limit
                ids = [op["op"] for op in ops[i : i + 500]]
                marks = ",".join("?" * len(ids))
                known.update(
                    db.execute(f"SELECT op_id, result FROM ops WHERE op_id IN ({marks})", ids)
                )
            new = [op for op in ops if op["op"] not in known]
            db.executemany(
                "INSERT INTO ops (op_id, op, updated) VALUES (?, ?, ?)",
                [(op["op"], json.dumps(op), now) for op in new],
            )
        done = [json.loads(r) for r in known.values() if r is not None]
        return new, done

    def complete(self, results: Iterable[dict]) -> None:
        """Record results; the finished operations' sealed parameters are scrubbed."""
        results = list(results)
        now = time.time()
        with self.transaction() as db:
            scrub = db.executemany(
                "UPDATE ops SET op = json_remove(op, '$.params.sealed')"
                " WHERE op_id = ? AND json_type(op, '$.params.sealed') IS NOT NULL",
                [(r["op"],) for r in results],
            )
            self._scrubbed |= scrub.rowcount > 0  # the log is cleared after the commit
            db.executemany(
                "UPDATE ops SET result = ?, sent = 0, updated = ? WHERE op_id = ?",
                [(json.dumps(r), now, r["op"]) for r in results],
            )

    def mark_sent(self, op_ids: Iterable[str]) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE ops SET sent = 1 WHERE op_id = ? AND result IS NOT NULL",
                [(i,) for i in op_ids],
            )

    def result(self, op_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT result FROM ops WHERE op_id = ?", (op_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def pending_ops(self) -> list[dict]:
        """Accepted but unfinished: the agent resumes these after a restart."""
        with self._lock:
            rows = self._db.execute(
                "SELECT op FROM ops WHERE result IS NULL ORDER BY updated, rowid"
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def unsent_results(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT result FROM ops WHERE result IS NOT NULL AND sent = 0 ORDER BY updated"
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def prune(self, older_than_s: float) -> int:
        """Forget delivered results older than the retention; returns how many."""
        with self.transaction() as db:
            cur = db.execute(
                "DELETE FROM ops WHERE result IS NOT NULL AND sent = 1 AND updated < ?",
                (time.time() - older_than_s,),
            )
            return cur.rowcount

    # -- small keyed state for drivers --------------------------------------------------

    def get(self, ns: str, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM kv WHERE ns = ? AND key = ?", (ns, key)
            ).fetchone()
        return json.loads(row[0]) if row else default

    def items(self, ns: str) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM kv WHERE ns = ?", (ns,)).fetchall()
        return {k: json.loads(v) for k, v in rows}

    def put_many(self, ns: str, values: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO kv (ns, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value",
                [(ns, k, json.dumps(v)) for k, v in values.items()],
            )
