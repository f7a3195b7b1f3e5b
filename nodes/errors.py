"""What the engines raise. Every class is an EngineError (bus/errors.py), so the node runtime turns
it into an `error` tap event and the node keeps running; only a bug escapes as something else.

    EngineError (bus.errors)
    ├── ModelLoadError        a model folder or file is missing, malformed, or its weights do not fit
    ├── InferenceError        llama.cpp failed on one translation (the model stays loaded)
    │   └── ContextOverflow   the prompt of one sentence does not fit the context window
    ├── UnknownVoice          a voice name that is neither a stored voice nor a model speaker
    ├── VoiceError            a prompt WAV / transcript that cannot become a voice
    └── SynthesisError        one utterance could not be made
        ├── NothingToSay      empty text, or text with nothing speakable (symbols only)
        ├── SynthesisTimeout  the deadline passed (model too slow, or the next clause never came)
        └── SynthesisCancelled  a cancel arrived while speaking
"""

from __future__ import annotations

from bus.errors import EngineError

__all__ = [
    "ContextOverflow",
    "EngineError",
    "InferenceError",
    "ModelLoadError",
    "NothingToSay",
    "SynthesisCancelled",
    "SynthesisError",
    "SynthesisTimeout",
    "UnknownVoice",
    "VoiceError",
]


class ModelLoadError(EngineError):
    """The model folder cannot be loaded (missing file, bad config, weights that do not fit)."""


class InferenceError(EngineError):
    """llama.cpp failed while translating one sentence; the model is still loaded."""


class ContextOverflow(InferenceError):
    """One sentence's prompt (system prompt + sentence + room to answer) exceeds n_ctx."""


class UnknownVoice(EngineError):
    """The voice asked for is neither a stored voice nor a speaker of the model."""


class VoiceError(EngineError):
    """A prompt recording or transcript that cannot be turned into a voice."""


class SynthesisError(EngineError):
    """One utterance failed; the engine is still usable."""


class NothingToSay(SynthesisError):
    """The text is empty or has nothing speakable in it (only symbols or whitespace)."""


class SynthesisTimeout(SynthesisError):
    """The synthesis deadline passed before the utterance was complete."""


class SynthesisCancelled(SynthesisError):
    """The caller cancelled the utterance."""
