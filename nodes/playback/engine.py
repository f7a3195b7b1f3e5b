"""What the playback node sees of a sound device: a stream that pulls float32 mono blocks from a
render function in the device's own thread, and what the device says about itself.

The real one is nodes/playback/device/ (sounddevice, PortAudio); with no device the node writes
WAV files instead (nodes/playback/wav_sink.py). Failures are AudioDeviceError:

    EngineError (bus.errors)
    └── AudioDeviceError      the sound device could not be used
        ├── NoAudioDevice     none at all, or the configured one is absent
        └── DeviceLost        the stream stopped by itself (unplugged, server gone)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bus.errors import EngineError

Render = Callable[[int, int], np.ndarray]  # (frames, DAC wall ns of the first) -> float32[frames]


class AudioDeviceError(EngineError):
    """The sound device could not be used."""


class NoAudioDevice(AudioDeviceError):
    """There is no usable output device (none at all, or the configured one is absent)."""


class DeviceLost(AudioDeviceError):
    """The output stream stopped by itself: device unplugged, sound server gone."""


@dataclass(frozen=True)
class OpenInfo:
    device: str
    rate_hz: int  # the stream's rate (the synthesizer's, or the device's when it cannot take that)
    channels: int
    latency_s: float  # the output latency PortAudio reports for the stream
    blocksize: int


class AudioOutput(Protocol):
    """A device stream pulling blocks from `render` until close()."""

    def probe(self) -> str:
        """The output device's name, or NoAudioDevice saying why there is none."""
        ...

    def open(self, rate_hz: int, render: Render) -> OpenInfo: ...

    def close(self) -> None: ...

    def failure(self) -> str | None:
        """Why the open stream stopped by itself, or None while it runs (or is closed)."""
        ...

    def underflows(self) -> int:
        """Output underflows the device reported since this object was made."""
        ...
