"""Incremental sentence segmentation (first cut: the API the ingest node uses; deepened next).

`Segmenter.feed(text)` takes any chunk of a message and returns the sentences it completed, each
once, in order; `flush()` returns what is pending at the end of the message; `poll(now)` flushes a
sentence that stopped growing for `idle_flush_s`.
"""

from __future__ import annotations

import re
import time

DEFAULT_IDLE_FLUSH_S = 2.0

# A sentence end: terminators, closing quotes/brackets, then whitespace followed by one more char.
_END = re.compile(r"[.!?]+[\"')\]]*(?=\s+\S)|[。！？]+[」』）]*(?=[^」』）])|\n\s*\n")


class Segmenter:
    """Splits a stream of text into sentences; state is one message."""

    def __init__(self, idle_flush_s: float | None = DEFAULT_IDLE_FLUSH_S) -> None:
        self.idle_flush_s = idle_flush_s
        self._buf = ""
        self._last_feed = time.monotonic()

    def feed(self, text: str) -> list[str]:
        self._buf += text
        self._last_feed = time.monotonic()
        out: list[str] = []
        while m := _END.search(self._buf):
            sentence, self._buf = self._buf[: m.end()].strip(), self._buf[m.end() :]
            if sentence:
                out.append(sentence)
        return out

    def flush(self) -> list[str]:
        rest, self._buf = self._buf.strip(), ""
        return [rest] if rest else []

    def poll(self, now: float | None = None) -> list[str]:
        if self.idle_flush_s is None or not self._buf.strip():
            return []
        now = time.monotonic() if now is None else now
        return self.flush() if now - self._last_feed >= self.idle_flush_s else []

    @property
    def pending(self) -> str:
        return self._buf
