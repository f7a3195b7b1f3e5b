"""Which sentence of a stream may go out next: the one ordering rule of both playback sinks.

A sentence goes out when the WAV sink writes it, or when the device path starts handing its chunks
to the player (which then plays a stream's sentences in seq order, one at a time). Per stream the
seq due next is the one after the last that went out (after played.jsonl's last on a start; 0 for
a stream never seen). The due seq goes at once. A later one waits for the missing one for as long
as it can still come: ingest, the journal's owner, re-sends it, or gives it up and says so
(GivenUp), and only then is it skipped. Should that word be lost, a later seq goes after waiting
`max_wait_s` (twice the pipeline's give_up_s, bus/config.py) from when the gap began to hold it up.
A skipped one arriving afterwards is late: failed, never played out of order. After a cancel nobody
knows which seq comes next, so any goes. A sentence that went out but did not get out is due
again: a failed one while no later seq went, and all of them when the device died.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

T = TypeVar("T")


class Turn(Enum):
    WAIT = "wait"  # an earlier seq may come yet
    GO = "go"  # its turn: out now
    LATE = "late"  # its turn has passed (skipped): fail it


@dataclass(frozen=True)
class Decision:
    turn: Turn
    skipped: range = range(0)  # seqs given up on so that this one may go (GO after a wait)
    reason: str = ""  # why it was skipped past, or why it is late


class SeqOrder:
    """Per stream, the seq due next; `decide` applies the rule (module docstring)."""

    def __init__(
        self,
        max_wait_s: float,
        went_out: Iterable[tuple[str, int]] = (),
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_wait_s = max_wait_s
        self._now = now
        self._due: dict[str, int | None] = {}  # None: any seq (after a cancel)
        self._due_since: dict[str, float] = {}  # when the stream's due seq became due
        self._gone: dict[str, set[int]] = {}  # seqs ingest gave up, not yet due
        self._passed: list[tuple[str, int]] = []  # given-up seqs the order went past, not yet told
        for stream, seq in went_out:
            self.went_out(stream, seq)

    def due(self, stream: str) -> int | None:
        return self._due.get(stream, 0)

    def late(self, stream: str, seq: int) -> bool:
        due = self.due(stream)
        return due is not None and seq < due

    def decide(self, stream: str, seq: int, ready_since: float) -> Decision:
        """The turn of `seq`, the lowest of its stream that could go, ready since `ready_since`
        (monotonic seconds)."""
        due = self.due(stream)
        if due is None or seq == due:
            return Decision(Turn.GO)
        if seq < due:
            return Decision(Turn.LATE, reason=f"arrived after seq {due - 1} of its stream went out (skipped)")
        held_since = max(ready_since, self._due_since.get(stream, ready_since))
        if self._now() - held_since < self.max_wait_s:
            return Decision(Turn.WAIT)
        why = f"no word of it {self.max_wait_s:g} s after seq {seq} was held up for it"
        return Decision(Turn.GO, skipped=range(due, seq), reason=why)

    def given_up(self, stream: str, seq: int) -> None:
        """Ingest gave `seq` up: it never comes, the stream goes on past it."""
        due = self._due.get(stream, 0)
        if due is not None and seq >= due:
            self._gone.setdefault(stream, set()).add(seq)
            self._set_due(stream, due)

    def went_out(self, stream: str, seq: int) -> None:
        self._set_due(stream, max(seq + 1, self._due.get(stream) or 0))

    def take_back(self, stream: str, seq: int) -> None:
        """`seq` went out but never got out: due again, unless a later seq went out since."""
        if self._due.get(stream) == seq + 1:
            self._set_due(stream, seq)

    def rewind(self, stream: str, seq: int) -> None:
        """`seq` and what went out after it never got out (the device died): due again from `seq`."""
        due = self._due.get(stream)
        if due is None or seq < due:
            self._set_due(stream, seq)

    def _set_due(self, stream: str, due: int) -> None:
        gone = self._gone.get(stream, set())
        while due in gone:  # given up: never comes
            gone.discard(due)
            self._passed.append((stream, due))
            due += 1
        if self._due.get(stream, -1) != due:
            self._due_since[stream] = self._now()
        self._due[stream] = due

    def take_passed(self) -> list[tuple[str, int]]:
        """(stream, seq) of the given-up seqs the order went past since the last call."""
        passed, self._passed = self._passed, []
        return passed

    def cancel(self, streams: Iterable[str]) -> None:
        """What comes next on these streams is not known here: any seq."""
        for stream in streams:
            self._due[stream] = None
            self._gone.pop(stream, None)

    def streams(self) -> list[str]:
        return list(self._due)


def lowest_per_stream(items: Iterable[T], ids: Callable[[T], tuple[str, int]]) -> dict[str, T]:
    """Per stream, the item of the lowest seq (the first of equals): the one `decide` is asked about."""
    heads: dict[str, tuple[int, T]] = {}
    for item in items:
        stream, seq = ids(item)
        if stream not in heads or seq < heads[stream][0]:
            heads[stream] = (seq, item)
    return {stream: item for stream, (_, item) in heads.items()}
