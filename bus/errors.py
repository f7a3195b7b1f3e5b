"""Errors a node survives. The runtime (bus/node.py) turns any EngineError into an `error` tap
event and keeps the node running; only a bug escapes as something else. Each stage's engines
raise subclasses, drawn in that stage's errors module:

    EngineError
    ├── ModelLoadError        a model folder or file is missing, malformed, or its weights do not fit
    ├── nodes/translate/errors.py    InferenceError, ContextOverflow
    ├── nodes/synthesize/errors.py   SynthesisError (NothingToSay, SynthesisTimeout, ...), voices
    └── nodes/playback/device/output.py  AudioDeviceError (NoAudioDevice, DeviceLost)
"""


class EngineError(RuntimeError):
    """An engine could not do one piece of work (or could not load); the node goes on."""


class ModelLoadError(EngineError):
    """The model folder cannot be loaded (missing file, bad config, weights that do not fit)."""
