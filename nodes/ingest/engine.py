"""What the ingest node sees of its text engine: one stream's English in, as it arrives in any
pieces, and whole speakable sentences out.

The real one is nodes/ingest/text/ (`SentenceStream`: markdown and code stripped, numbers, paths
and URLs made sayable, an incremental sentence segmenter). Ingest keeps one per stream.
"""

from __future__ import annotations

from typing import Protocol


class Sentences(Protocol):
    """One stream's text to sentences; the same text gives the same sentences however it was cut."""

    def feed(self, text: str) -> list[str]:
        """The sentences that `text` completes (possibly none)."""
        ...

    def flush(self) -> list[str]:
        """Whatever is still open, as sentences: the producer says the text is whole."""
        ...

    def poll(self, now: float | None = None) -> list[str]:
        """What has waited past the idle flush by `now` (monotonic seconds), as sentences."""
        ...

    @property
    def pending(self) -> str:
        """The text held back, not yet a sentence."""
        ...
