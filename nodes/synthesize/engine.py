"""What the synthesize node sees of a voice engine: text pieces in, float32 PCM chunks out.

Plain types only, so the node never sees torch and a test can put a function behind it. The
real engine is nodes/synthesize/cosyvoice/ (`CosyVoiceEngine`); another voice engine implements
`Synthesizer` in a subpackage of its own and the node's factory picks it. `TextFeed` carries one
sentence's text from the node's loop to the engine's thread as the clauses arrive.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from nodes.synthesize.errors import SynthesisTimeout


@dataclass(frozen=True)
class SpeechChunk:
    """One piece of an utterance's audio. `last` marks the final chunk of the whole synthesis."""

    pcm: np.ndarray  # float32, mono, at the synthesizer's sample_rate_hz
    last: bool
    utterance: int = 0  # which utterance of the synthesis (long text is split into several)
    timings: dict[str, float] = field(default_factory=dict)  # lm_ms, lm_steps, flow_ms, hift_ms


class Synthesizer(Protocol):
    """A loaded voice model. Every failure is an EngineError subclass (nodes/synthesize/errors.py)."""

    sample_rate_hz: int  # Hertz of every chunk's pcm

    @property
    def device_type(self) -> str:
        """Where it runs: "cuda", "mps" or "cpu" (translate holds its GPU work only for a shared GPU)."""
        ...

    def synthesize(
        self, text_pieces: Iterable[str], voice: str = "", deadline_s: float | None = None, speed: float = 1.0
    ) -> Iterator[SpeechChunk]:
        """Audio for the pieces of one sentence, chunk by chunk, as they are made, within
        `deadline_s` (None: the engine's own); `speed` (0.5 to 2.0) by the engine's own duration
        control, the pitch unchanged."""
        ...

    def voices(self) -> list[str]:
        """The voice names `synthesize` takes."""
        ...

    def describe(self) -> dict[str, Any]:
        """What was loaded and how, in plain values (the node's `engine` event)."""
        ...

    def describe_voice(self, name: str) -> dict[str, Any]:
        """The voice `name` resolves to (name, source, cross_lingual); UnknownVoice if none."""
        ...

    def close(self) -> None: ...


class TextFeed:
    """The text of one sentence as it arrives, from another thread: `put` each clause, `close`
    after the last. The engine waits for pieces only until its deadline; `cancel` stops it."""

    _END = object()

    def __init__(self, on_wait: Callable[[], None] | None = None) -> None:
        self._q: queue.Queue[object] = queue.Queue()
        self._cancel = threading.Event()
        self.on_wait = on_wait  # called (on the engine's thread) each time it finds no text waiting

    def put(self, text: str) -> None:
        self._q.put(text)

    def close(self) -> None:
        self._q.put(self._END)

    def cancel(self) -> None:
        self._cancel.set()
        self._q.put(self._END)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def ready(self) -> bool:
        """A piece (or the end) is waiting: `get` returns at once, and `on_wait` is not called."""
        return not self._q.empty()

    def __iter__(self) -> Iterator[str]:
        """Plain iteration (no deadline of its own); the engine uses `get` with its deadline."""
        while (piece := self.get(float(1 << 30))) is not None:
            yield piece

    def get(self, timeout_s: float) -> str | None:
        """The next piece, None at the end; SynthesisTimeout if none comes in time."""
        if self.on_wait is not None and self._q.empty():
            self.on_wait()
        try:
            item = self._q.get(timeout=max(timeout_s, 0.0))
        except queue.Empty:
            raise SynthesisTimeout(f"no further text within the deadline ({timeout_s:.1f} s left)") from None
        return None if item is self._END else str(item)
