"""Which data messages a stage must not act on: cancelled, an older attempt, or a duplicate.

Every stage is idempotent by (stream, seq, attempt) (docs/architecture.md, "Reliability"), and this one
rule set, applied by the runtime before `handle`, makes it so for every node alike:
- cancelled: ingest stamped the message before it took a Cancel for its stream (or for all);
  the time ingest took the cancel rides in the Cancel's own ingest stamp;
- older attempt: a later attempt of the same (stream, seq) was already seen here, or ingest said
  it sent one (Resent), or ingest gave the sentence up (GivenUp: no attempt is fresh any more);
- duplicate: this very message (type, stream, seq, attempt, index) was already handled.
Acks (Played, Failed) are never stale: they say what happened, and ingest's journal decides what
they change (a played ack that crossed a cancel on the way is the truth: the sentence was heard).
Memory is bounded: the oldest ids are forgotten past MAX_IDS.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from bus.messages import Cancel, Failed, Message, Played

MAX_IDS = 20_000
INGEST = "ingest"
GIVEN_UP = 2**62  # the "newest attempt" of a sentence given up: every attempt is older


class Freshness:
    def __init__(self) -> None:
        self.cut_ns: dict[str, int] = {}  # stream ("" = every stream) -> ingest time of the cancel
        self._attempts: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._seen: OrderedDict[tuple[str, str, int, int, int], None] = OrderedDict()

    def cancel(self, msg: Cancel) -> None:
        at = _ingest_ns(msg) or time.time_ns()
        self.cut_ns[msg.stream] = max(at, self.cut_ns.get(msg.stream, 0))

    def supersede(self, stream: str, seq: int, attempt: int) -> None:
        """Ingest sent `attempt` of (stream, seq): older attempts are stale from now on."""
        self._note((stream, seq), attempt)

    def give_up(self, stream: str, seq: int) -> None:
        """Ingest gave (stream, seq) up: every attempt of it is stale from now on."""
        self._note((stream, seq), GIVEN_UP)

    def _note(self, sentence: tuple[str, int], attempt: int) -> None:
        attempts = self._attempts
        attempts[sentence] = max(attempt, attempts.get(sentence, -1))
        attempts.move_to_end(sentence)
        if len(attempts) > MAX_IDS:
            attempts.popitem(last=False)

    def stale(self, msg: Message) -> str | None:
        """Why `msg` must be dropped, or None to handle it. Records it as seen when fresh."""
        stream, seq = getattr(msg, "stream", None), getattr(msg, "seq", None)
        if stream is None or seq is None or isinstance(msg, Played | Failed):
            return None
        if self.cut_ns:  # only after a cancel is there anything to compare with
            ingest_ns = _ingest_ns(msg)
            cut = max(self.cut_ns.get(stream, 0), self.cut_ns.get("", 0))
            if ingest_ns is not None and ingest_ns < cut:
                return "cancelled"
        attempt = getattr(msg, "attempt", 0)
        sentence, attempts, seen = (stream, seq), self._attempts, self._seen
        newest = attempts.get(sentence, -1)
        if newest == GIVEN_UP:
            return "given up by ingest"
        if attempt < newest:
            return f"attempt {attempt} is older than attempt {newest}, already seen or sent"
        key = (msg.TYPE, stream, seq, attempt, getattr(msg, "index", -1))
        if key in seen:
            return "duplicate"
        seen[key] = None
        attempts[sentence] = attempt
        attempts.move_to_end(sentence)
        if len(seen) > MAX_IDS:  # one id in, at most one out: each table stays bounded
            seen.popitem(last=False)
        if len(attempts) > MAX_IDS:
            attempts.popitem(last=False)
        return None


def _ingest_ns(msg: Message) -> int | None:
    for stamp in getattr(msg, "stamps", ()):
        if stamp.stage == INGEST:
            return int(stamp.sent_wall_ns)
    return None
