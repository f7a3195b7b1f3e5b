"""Which data messages a stage must not act on: cancelled, an older attempt, or a duplicate.

Every stage is idempotent by (stream, seq, attempt) (docs/architecture.md, "Reliability"), and this one
rule set, applied by the runtime before `handle`, makes it so for every node alike:
- cancelled: ingest stamped the message before it took a Cancel for its stream (or for all);
  the time ingest took the cancel rides in the Cancel's own ingest stamp;
- older attempt: a later attempt of the same (stream, seq) was already seen here;
- duplicate: this very message (type, stream, seq, attempt, index) was already handled.
Memory is bounded: the oldest ids are forgotten past MAX_IDS.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from bus.messages import Cancel, Message

MAX_IDS = 20_000
INGEST = "ingest"


class Freshness:
    def __init__(self) -> None:
        self.cut_ns: dict[str, int] = {}  # stream ("" = every stream) -> ingest time of the cancel
        self._attempts: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._seen: OrderedDict[tuple[str, str, int, int, int], None] = OrderedDict()

    def cancel(self, msg: Cancel) -> None:
        at = _ingest_ns(msg) or time.time_ns()
        self.cut_ns[msg.stream] = max(at, self.cut_ns.get(msg.stream, 0))

    def stale(self, msg: Message) -> str | None:
        """Why `msg` must be dropped, or None to handle it. Records it as seen when fresh."""
        stream, seq = getattr(msg, "stream", None), getattr(msg, "seq", None)
        if stream is None or seq is None:
            return None
        if self.cut_ns:  # only after a cancel is there anything to compare with
            ingest_ns = _ingest_ns(msg)
            cut = max(self.cut_ns.get(stream, 0), self.cut_ns.get("", 0))
            if ingest_ns is not None and ingest_ns < cut:
                return "cancelled"
        attempt = getattr(msg, "attempt", 0)
        sentence, attempts, seen = (stream, seq), self._attempts, self._seen
        newest = attempts.get(sentence, -1)
        if attempt < newest:
            return f"attempt {attempt} is older than attempt {newest}, already seen"
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
