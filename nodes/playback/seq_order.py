"""Which sentence of a stream may go out next: the one ordering rule of both playback sinks.

A sentence goes out when the WAV sink writes it, or when the device path starts handing its chunks
to the player (which then plays a stream's sentences in seq order, one at a time). Per stream the
seq due next is the one after the last that went out (after played.jsonl's last on a start; 0 for
a stream never seen). The due seq goes at once. A later one waits `gap_wait_s` for the missing
ones, then goes and they are skipped; one of those arriving afterwards is late: failed, never
played out of order. After a cancel nobody knows which seq comes next, so any goes. A sentence that
went out but did not get out is due again: a failed one while no later seq went, and all of them
when the device died.
"""

from __future__ import annotations

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

    def __init__(self, gap_wait_s: float, went_out: Iterable[tuple[str, int]] = ()) -> None:
        self.gap_wait_s = gap_wait_s
        self._due: dict[str, int | None] = {}  # None: any seq (after a cancel)
        for stream, seq in went_out:
            self.went_out(stream, seq)

    def due(self, stream: str) -> int | None:
        return self._due.get(stream, 0)

    def late(self, stream: str, seq: int) -> bool:
        due = self.due(stream)
        return due is not None and seq < due

    def decide(self, stream: str, seq: int, waited_s: float) -> Decision:
        """The turn of `seq`, the lowest of its stream that could go, ready for `waited_s`."""
        due = self.due(stream)
        if due is None or seq == due:
            return Decision(Turn.GO)
        if seq < due:
            return Decision(Turn.LATE, reason=f"arrived after seq {due - 1} of its stream went out (skipped)")
        if waited_s < self.gap_wait_s:
            return Decision(Turn.WAIT)
        why = f"not here {self.gap_wait_s:g} s after seq {seq} was"
        return Decision(Turn.GO, skipped=range(due, seq), reason=why)

    def went_out(self, stream: str, seq: int) -> None:
        self._due[stream] = max(seq + 1, self._due.get(stream) or 0)

    def take_back(self, stream: str, seq: int) -> None:
        """`seq` went out but never got out: due again, unless a later seq went out since."""
        if self._due.get(stream) == seq + 1:
            self._due[stream] = seq

    def rewind(self, stream: str, seq: int) -> None:
        """`seq` and what went out after it never got out (the device died): due again from `seq`."""
        due = self._due.get(stream)
        if due is None or seq < due:
            self._due[stream] = seq

    def cancel(self, streams: Iterable[str]) -> None:
        """What comes next on these streams is not known here: any seq."""
        for stream in streams:
            self._due[stream] = None

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
