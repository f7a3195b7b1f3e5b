"""What the translate node sees of a translation engine: English in, Japanese text pieces out.

Plain types only; no bus type crosses this line. The real engine is nodes/translate/llama/
(llama-cpp-python on a Qwen GGUF); another one implements `Translator` in a subpackage of its own.
Failures are the EngineError subclasses of nodes/translate/errors.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol


class Translator(Protocol):
    """English sentence in, raw Japanese text pieces out, in decode order."""

    backend: str  # "cuda", "metal", "cpu", ...

    def translate(
        self,
        text: str,
        context: Sequence[tuple[str, str]] = (),
        *,
        strict: bool = False,
        brief: bool = False,
    ) -> Iterator[str]:
        """Pieces of the translation of `text`, given earlier (English, Japanese) pairs of the
        same stream as `context`. `strict`: the retry after a non-Japanese answer. `brief`: `text` is
        a whole answer, one sentence a line: say its gist in one to three Japanese sentences."""
        ...

    def describe(self) -> dict[str, Any]:
        """What was loaded and how, in plain values (the node's `backend` event)."""
        ...

    def close(self) -> None: ...
