"""The journal: ids that survive restarts, acks that close sentences, due re-sends, pruning."""

from __future__ import annotations

import time
from pathlib import Path

from bus.journal import CANCELLED, FAILED, PLAYED, Journal


def test_seq_is_per_stream_and_survives_reopening(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    far = time.time_ns() + 10**12
    assert [j.add("a", "x", far).seq, j.add("a", "y", far).seq, j.add("b", "z", far).seq] == [0, 1, 0]
    j.close()
    j = Journal(tmp_path / "j.sqlite3")
    assert j.add("a", "w", far).seq == 2
    assert [e.text for e in j.open_entries("a")] == ["x", "y", "w"]


def test_acks_close_sentences_once_and_due_ones_come_back(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    now = time.time_ns()
    j.add("a", "past", now - 1)
    j.add("a", "future", now + 10**12)
    assert [e.text for e in j.due(now)] == ["past"]
    assert j.retry("a", 0, now + 10**12) == 1
    assert j.due(now) == []
    assert j.finish("a", 0, PLAYED) is True
    assert j.finish("a", 0, PLAYED) is False  # a duplicate ack changes nothing
    assert j.finish("a", 1, CANCELLED) is True
    assert j.counts() == {"played": 1, "cancelled": 1}


def test_prune_keeps_open_sentences_and_the_newest_done(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    far = time.time_ns() + 10**12
    for i in range(50):
        j.add("s", f"t{i}", far)
    for i in range(40):
        j.finish("s", i, PLAYED)
    assert j.prune(keep=5) == 35
    assert j.counts() == {"played": 5, "sent": 10}


def test_a_played_ack_wins_over_a_cancel_or_give_up_recorded_before_it(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    far = time.time_ns() + 10**12
    for text in ("heard.", "also heard.", "never heard."):
        j.add("s", text, far)
    assert j.finish("s", 0, CANCELLED, "a new turn")
    assert j.finish("s", 1, FAILED, "given up")
    assert j.finish("s", 0, PLAYED) and j.finish("s", 1, PLAYED)  # the listener heard both
    assert not j.finish("s", 0, CANCELLED) and not j.finish("s", 0, PLAYED)  # played is final
    assert j.finish("s", 2, CANCELLED) and not j.finish("s", 2, FAILED)
    assert j.counts() == {"played": 2, "cancelled": 1}
