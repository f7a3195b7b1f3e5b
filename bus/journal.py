"""Ingest's journal: every sentence is written here (SQLite, WAL) before it is sent, and marked
done when playback acks it, so ids keep increasing across restarts and nothing accepted is lost.

One row per (stream, seq): its text, the attempt last sent, how many of its attempts a stage
failed, its state (sent, played, failed, cancelled) and the deadline after which it is due again.
A played ack is the truth about a sentence: it wins over a cancel or a give-up recorded before it
arrived (the listener heard it). The journal is pruned of finished rows past KEEP_DONE so it stays
small.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

KEEP_DONE = 2000  # finished rows kept (most recent) for duplicate acks and status
KEEP_TEXT_IDS_S = 3600  # producers' text ids remembered this long (a re-send comes within seconds)
SENT, PLAYED, FAILED, CANCELLED = "sent", "played", "failed", "cancelled"
DONE_STATES = (PLAYED, FAILED, CANCELLED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (stream TEXT PRIMARY KEY, next_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sentences (
    stream TEXT NOT NULL, seq INTEGER NOT NULL, text TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL,
    created_ns INTEGER NOT NULL, deadline_ns INTEGER NOT NULL, done_ns INTEGER,
    reason TEXT NOT NULL DEFAULT '', failures INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, seq));
CREATE INDEX IF NOT EXISTS sentences_open ON sentences (state, deadline_ns);
CREATE TABLE IF NOT EXISTS texts (id TEXT PRIMARY KEY, stream TEXT NOT NULL, at_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending (stream TEXT PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS turns (stream TEXT NOT NULL, idx INTEGER NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY (stream, idx));
CREATE TABLE IF NOT EXISTS modes (stream TEXT PRIMARY KEY, mode TEXT NOT NULL);
"""
_COLUMNS = "stream, seq, text, attempt, state, deadline_ns, failures, summary"


@dataclass(frozen=True)
class Entry:
    stream: str
    seq: int
    text: str
    attempt: int
    state: str
    deadline_ns: int
    failures: int = 0  # attempts a stage failed (a re-send after a restart is not one)
    summary: int = 0  # 1: a brief-mode summary of a turn (its text: the turn's sentences, a line each)


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        cols = {row[1] for row in self._db.execute("PRAGMA table_info(sentences)")}
        if "failures" not in cols:  # a journal written before failures were counted apart
            self._db.execute("ALTER TABLE sentences ADD COLUMN failures INTEGER NOT NULL DEFAULT 0")
        if "summary" not in cols:  # before brief mode
            self._db.execute("ALTER TABLE sentences ADD COLUMN summary INTEGER NOT NULL DEFAULT 0")

    def add(self, stream: str, text: str, deadline_ns: int) -> Entry:
        """Give the sentence the stream's next seq and store it, in one transaction."""
        return self.commit(stream, [(text, deadline_ns)])[0]

    def commit(
        self,
        stream: str,
        sentences: list[tuple[str, int]],
        pending: str | None = None,
        text_id: str = "",
        held: list[str] | None = None,
        summary: bool = False,
    ) -> list[Entry]:
        """In one transaction: the (text, deadline_ns) sentences with the stream's next seqs, the
        text the stream still holds back (`pending`: what ingest would lose in a crash), and the
        producer's text id, so the same text is never taken twice. Raises sqlite3.Error (a full
        disk: "database or disk is full") with nothing written. `held`: sentences kept back for
        the stream's turn (brief mode: no seq yet); `summary`: the sentences are turn summaries."""
        with self._tx():
            out = self._add(stream, sentences, summary)
            if held:
                row = self._db.execute("SELECT COALESCE(MAX(idx), -1) FROM turns WHERE stream=?", (stream,))
                start = int(row.fetchone()[0]) + 1
                self._db.executemany(
                    "INSERT INTO turns (stream, idx, text) VALUES (?, ?, ?)",
                    [(stream, start + i, t) for i, t in enumerate(held)],
                )
            if pending is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO pending (stream, text) VALUES (?, ?)", (stream, pending)
                )
            if text_id:
                self._db.execute(
                    "INSERT INTO texts (id, stream, at_ns) VALUES (?, ?, ?)",
                    (text_id, stream, time.time_ns()),
                )
        return out

    def _add(self, stream: str, sentences: list[tuple[str, int]], summary: bool = False) -> list[Entry]:
        """Insert the sentences with the stream's next seqs (inside a transaction)."""
        now = time.time_ns()
        out: list[Entry] = []
        row = self._db.execute("SELECT next_seq FROM streams WHERE stream=?", (stream,)).fetchone()
        seq = row[0] if row else 0
        for text, deadline_ns in sentences:
            self._db.execute(
                "INSERT INTO sentences (stream, seq, text, attempt, state, created_ns, deadline_ns, summary)"
                " VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
                (stream, seq, text, SENT, now, deadline_ns, int(summary)),
            )
            out.append(Entry(stream, seq, text, 0, SENT, deadline_ns, 0, int(summary)))
            seq += 1
        if sentences:
            self._db.execute("INSERT OR REPLACE INTO streams (stream, next_seq) VALUES (?, ?)", (stream, seq))
        return out

    def turn(self, stream: str) -> list[str]:
        """The sentences held back for the stream's turn (brief mode), in order."""
        rows = self._db.execute("SELECT text FROM turns WHERE stream=? ORDER BY idx", (stream,))
        return [r[0] for r in rows.fetchall()]

    def end_turn(self, stream: str, sentences: list[tuple[str, int]], summary: bool) -> list[Entry]:
        """The turn's held sentences become these sentences (all of them, or one summary), in one
        transaction: a crash leaves either the held turn or its sentences, never both, never none."""
        with self._tx():
            self._db.execute("DELETE FROM turns WHERE stream=?", (stream,))
            return self._add(stream, sentences, summary)

    def drop_turn(self, stream: str | None) -> None:
        if stream:
            self._db.execute("DELETE FROM turns WHERE stream=?", (stream,))
        else:
            self._db.execute("DELETE FROM turns")

    def set_mode(self, stream: str, mode: str) -> None:
        with self._tx():
            if not stream:
                self._db.execute("DELETE FROM modes")
            self._db.execute("INSERT OR REPLACE INTO modes (stream, mode) VALUES (?, ?)", (stream, mode))

    def modes(self) -> dict[str, str]:
        """Modes set at run time: stream ("" = every stream) -> "full" | "brief"."""
        return dict(self._db.execute("SELECT stream, mode FROM modes").fetchall())

    def has_text(self, text_id: str) -> bool:
        """Whether a producer's text of this id was taken already."""
        return self._db.execute("SELECT 1 FROM texts WHERE id=?", (text_id,)).fetchone() is not None

    def pending_texts(self) -> dict[str, str]:
        """Per stream, the text ingest held back (not yet a sentence) when it last wrote."""
        return dict(self._db.execute("SELECT stream, text FROM pending WHERE text != ''").fetchall())

    def finish(self, stream: str, seq: int, state: str, reason: str = "") -> bool:
        """Mark a sentence done; False if it was unknown or already done. PLAYED also overrides a
        cancel or a give-up that came first: the sentence was heard."""
        before = (SENT, CANCELLED, FAILED) if state == PLAYED else (SENT,)
        marks = ",".join("?" * len(before))
        cur = self._db.execute(
            "UPDATE sentences SET state=?, done_ns=?, reason=?"
            f" WHERE stream=? AND seq=? AND state IN ({marks})",
            (state, time.time_ns(), reason, stream, seq, *before),
        )
        return cur.rowcount == 1

    def retry(self, stream: str, seq: int, deadline_ns: int, failed: bool = True) -> int:
        """Bump a sentence's attempt for a re-send (`failed`: a stage failed the last one, which
        counts against the retry budget); returns the new attempt."""
        with self._tx():
            self._db.execute(
                "UPDATE sentences SET attempt=attempt+1, failures=failures+?, deadline_ns=?"
                " WHERE stream=? AND seq=?",
                (int(failed), deadline_ns, stream, seq),
            )
            row = self._db.execute("SELECT attempt FROM sentences WHERE stream=? AND seq=?", (stream, seq))
            return int(row.fetchone()[0])

    def due(self, now_ns: int) -> list[Entry]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM sentences WHERE state=? AND deadline_ns<=? ORDER BY stream, seq",
            (SENT, now_ns),
        ).fetchall()
        return [Entry(*r) for r in rows]

    def heads(self) -> list[Entry]:
        """Each stream's next sentence: its lowest open seq (what playback waits for)."""
        rows = self._db.execute(
            "SELECT stream, MIN(seq), text, attempt, state, deadline_ns, failures FROM sentences"
            " WHERE state=? GROUP BY stream ORDER BY stream",
            (SENT,),
        ).fetchall()
        return [Entry(*r) for r in rows]

    def set_deadline(self, stream: str, seq: int, deadline_ns: int) -> None:
        self._db.execute(
            "UPDATE sentences SET deadline_ns=? WHERE stream=? AND seq=?", (deadline_ns, stream, seq)
        )

    def given_up_since(self, since_ns: int) -> list[Entry]:
        """Sentences finished unplayed (failed or cancelled) since `since_ns`: seqs that never come."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM sentences WHERE state IN (?, ?) AND done_ns>=? ORDER BY stream, seq",
            (FAILED, CANCELLED, since_ns),
        ).fetchall()
        return [Entry(*r) for r in rows]

    def open_entries(self, stream: str | None = None) -> list[Entry]:
        q = f"SELECT {_COLUMNS} FROM sentences WHERE state=?"
        args: tuple[object, ...] = (SENT,)
        if stream:
            q += " AND stream=?"
            args += (stream,)
        return [Entry(*r) for r in self._db.execute(q + " ORDER BY stream, seq", args)]

    def get(self, stream: str, seq: int) -> Entry | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM sentences WHERE stream=? AND seq=?", (stream, seq)
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
        self._db.execute("DELETE FROM texts WHERE at_ns < ?", (time.time_ns() - KEEP_TEXT_IDS_S * 10**9,))
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
        if exc_type is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:
            self.db.execute("ROLLBACK")
