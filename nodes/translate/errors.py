"""What the translation engines raise (each an EngineError: the node reports it and goes on).

EngineError (bus.errors)
├── ModelLoadError (bus.errors)
└── InferenceError        the engine failed on one translation (the model stays loaded)
    └── ContextOverflow   the prompt of one sentence does not fit the context window
"""

from __future__ import annotations

from bus.errors import EngineError, ModelLoadError

__all__ = ["ContextOverflow", "EngineError", "InferenceError", "ModelLoadError"]


class InferenceError(EngineError):
    """The engine failed while translating one sentence; the model is still loaded."""


class ContextOverflow(InferenceError):
    """One sentence's prompt (system prompt + sentence + room to answer) exceeds n_ctx."""
