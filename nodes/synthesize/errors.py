"""What the voice engines raise (each an EngineError: the node reports it and goes on).

EngineError (bus.errors)
├── ModelLoadError (bus.errors)
├── UnknownVoice          a voice name that is neither a stored voice nor a model speaker
├── VoiceError            a prompt WAV / transcript that cannot become a voice
└── SynthesisError        one utterance could not be made
    ├── NothingToSay      empty text, or text with nothing speakable (symbols only)
    ├── SynthesisTimeout  the deadline passed (model too slow, or the next clause never came)
    └── SynthesisCancelled  a cancel arrived while speaking
"""

from __future__ import annotations

from bus.errors import EngineError, ModelLoadError

__all__ = [
    "EngineError",
    "ModelLoadError",
    "NothingToSay",
    "SynthesisCancelled",
    "SynthesisError",
    "SynthesisTimeout",
    "UnknownVoice",
    "VoiceError",
]


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
