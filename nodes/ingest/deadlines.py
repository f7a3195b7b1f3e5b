"""How long ingest waits for a sentence's played ack before it sends the sentence again.

The deadline follows what the pipeline is measured to do, not a fixed guess. Every first played
ack tells ingest how long its sentence took end to end: from ingest's own send stamp to the ack's
arrival, both on ingest's clock, so every stage, queue and the audio itself are in it. The
estimate is a high quantile of seconds per character over the last WINDOW sentences; a sentence
shorter than CHARS_FLOOR counts as CHARS_FLOOR characters, so the fixed cost of a short sentence
is not taken for a per-character cost. Then

    deadline = margin * quantile(seconds per char) * max(len(text), CHARS_FLOOR)

clamped to [min_s, max_s]. Until WARMUP sentences are measured the configured prior
`base_s + per_char_s * len(text)` holds (clamped too). A slow or backed-up pipeline makes the
deadlines longer by itself, so it is not flooded with needless re-sends; a restarted ingest seeds
the estimate from its journal.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

WINDOW = 200  # most recent measured sentences the quantile is taken over
WARMUP = 5  # measurements before the estimate replaces the prior
CHARS_FLOOR = 16  # a shorter sentence is measured and budgeted as this many characters


@dataclass(frozen=True)
class DeadlinePolicy:
    base_s: float = 60.0  # the prior, before anything is measured: base_s + per_char_s * chars
    per_char_s: float = 0.5
    margin: float = 3.0  # deadline = margin * the quantile of measured seconds per character...
    quantile: float = 0.9
    min_s: float = 5.0  # ... never shorter than min_s nor longer than max_s
    max_s: float = 600.0

    def check(self) -> None:
        """ValueError naming the [ingest] key that is out of range."""
        for key in ("base_s", "per_char_s", "margin", "min_s", "max_s"):
            value = getattr(self, key)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"[ingest] deadline_{key} must be a number >= 0, got {value!r}")
        if not isinstance(self.quantile, int | float) or not 0 < self.quantile <= 1:
            raise ValueError(f"[ingest] deadline_quantile must be in (0, 1], got {self.quantile!r}")
        if self.margin < 1:
            raise ValueError(f"[ingest] deadline_margin must be >= 1, got {self.margin!r}")
        if self.min_s > self.max_s:
            raise ValueError(f"[ingest] deadline_min_s {self.min_s} exceeds deadline_max_s {self.max_s}")


class DeadlineEstimator:
    """Seconds per character, measured; deadlines from them (see the module docstring)."""

    def __init__(self, policy: DeadlinePolicy) -> None:
        policy.check()
        self.policy = policy
        self._rates: deque[float] = deque(maxlen=WINDOW)

    def observe(self, chars: int, seconds: float) -> None:
        """One sentence of `chars` characters took `seconds` from send to played ack."""
        if seconds > 0 and math.isfinite(seconds):
            self._rates.append(seconds / max(chars, CHARS_FLOOR))

    def seed(self, samples: Iterable[tuple[int, float]]) -> None:
        for chars, seconds in samples:
            self.observe(chars, seconds)

    @property
    def measured(self) -> int:
        return len(self._rates)

    def seconds_per_char(self) -> float | None:
        """The policy's quantile of measured seconds per character; None while warming up."""
        if len(self._rates) < WARMUP:
            return None
        ordered = sorted(self._rates)
        return ordered[min(len(ordered) - 1, math.ceil(self.policy.quantile * len(ordered)) - 1)]

    def deadline_s(self, chars: int) -> float:
        p = self.policy
        rate = self.seconds_per_char()
        raw = p.base_s + p.per_char_s * chars if rate is None else p.margin * rate * max(chars, CHARS_FLOOR)
        return min(p.max_s, max(p.min_s, raw))
