"""Ingest's journal: every sentence is written here (SQLite, WAL) before it is sent, and marked
done when playback acks it, so ids keep increasing across restarts and nothing accepted is lost.

One row per (stream, seq): its text, the attempt last sent, its state (sent, played, failed,
cancelled) and the deadline after which it is due again. The journal is pruned of finished rows
past KEEP_DONE so it stays small.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

KEEP_DONE = 2000  # finished rows kept (most recent) for duplicate acks and status
SENT, PLAYED, FAILED, CANCELLED = "sent", "played", "failed", "cancelled"
DONE_STATES = (PLAYED, FAILED, CANCELLED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (stream TEXT PRIMARY KEY, next_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sentences (
    stream TEXT NOT NULL, seq INTEGER NOT NULL, text TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL,
    created_ns INTEGER NOT NULL, deadline_ns INTEGER NOT NULL, done_ns INTEGER,
    reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (stream, seq));
CREATE INDEX IF NOT EXISTS sentences_open ON sentences (state, deadline_ns);
"""


@dataclass(frozen=True)
class Entry:
    stream: str
    seq: int
    text: str
    attempt: int
    state: str
    deadline_ns: int


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def add(self, stream: str, text: str, deadline_ns: int) -> Entry:
        """Give the sentence the stream's next seq and store it, in one transaction."""
        now = time.time_ns()
        with self._tx():
            row = self._db.execute("SELECT next_seq FROM streams WHERE stream=?", (stream,)).fetchone()
            seq = row[0] if row else 0
            self._db.execute(
                "INSERT OR REPLACE INTO streams (stream, next_seq) VALUES (?, ?)", (stream, seq + 1)
            )
            self._db.execute(
                "INSERT INTO sentences (stream, seq, text, attempt, state, created_ns, deadline_ns)"
                " VALUES (?, ?, ?, 0, ?, ?, ?)",
                (stream, seq, text, SENT, now, deadline_ns),
            )
        return Entry(stream, seq, text, 0, SENT, deadline_ns)

    def finish(self, stream: str, seq: int, state: str, reason: str = "") -> bool:
        """Mark a sentence done; False if it was unknown or already done."""
        cur = self._db.execute(
            "UPDATE sentences SET state=?, done_ns=?, reason=? WHERE stream=? AND seq=? AND state=?",
            (state, time.time_ns(), reason, stream, seq, SENT),
        )
        return cur.rowcount == 1

    def retry(self, stream: str, seq: int, deadline_ns: int) -> int:
        """Bump a sentence's attempt for a re-send; returns the new attempt."""
        with self._tx():
            self._db.execute(
                "UPDATE sentences SET attempt=attempt+1, deadline_ns=? WHERE stream=? AND seq=?",
                (deadline_ns, stream, seq),
            )
            row = self._db.execute("SELECT attempt FROM sentences WHERE stream=? AND seq=?", (stream, seq))
            return int(row.fetchone()[0])

    def due(self, now_ns: int) -> list[Entry]:
        rows = self._db.execute(
            "SELECT stream, seq, text, attempt, state, deadline_ns FROM sentences"
            " WHERE state=? AND deadline_ns<=? ORDER BY stream, seq",
            (SENT, now_ns),
        ).fetchall()
        return [Entry(*r) for r in rows]

    def open_entries(self, stream: str | None = None) -> list[Entry]:
        q = "SELECT stream, seq, text, attempt, state, deadline_ns FROM sentences WHERE state=?"
        args: tuple[object, ...] = (SENT,)
        if stream:
            q += " AND stream=?"
            args += (stream,)
        return [Entry(*r) for r in self._db.execute(q + " ORDER BY stream, seq", args)]

    def get(self, stream: str, seq: int) -> Entry | None:
        row = self._db.execute(
            "SELECT stream, seq, text, attempt, state, deadline_ns FROM sentences WHERE stream=? AND seq=?",
            (stream, seq),
        ).fetchone()
        return Entry(*row) if row else None

    def first_attempt_times(self, limit: int) -> list[tuple[int, float]]:
        """(characters, seconds from journaled to played) of the newest sentences played at their
        first attempt: what a restarted ingest seeds its deadline estimate with."""
        rows = self._db.execute(
            "SELECT length(text), done_ns - created_ns FROM sentences"
            " WHERE state=? AND attempt=0 AND done_ns IS NOT NULL ORDER BY done_ns DESC LIMIT ?",
            (PLAYED, limit),
        ).fetchall()
        return [(int(chars), ns / 1e9) for chars, ns in reversed(rows)]

    def prune(self, keep: int = KEEP_DONE) -> int:
        cur = self._db.execute(
            "DELETE FROM sentences WHERE state!=? AND rowid NOT IN"
            " (SELECT rowid FROM sentences WHERE state!=? ORDER BY done_ns DESC LIMIT ?)",
            (SENT, SENT, keep),
        )
        return cur.rowcount

    def counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT state, COUNT(*) FROM sentences GROUP BY state").fetchall())

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
