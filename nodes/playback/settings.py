"""Playback's settings (the [playback] table) and the small audio helpers the node needs: PCM of any
chunk format as mono float32, and a per-sentence streaming resampler (soxr) for a device that
cannot take the synthesizer's rate.

    [playback]
    sink = "auto"            # "auto": the sound device if one is usable, else WAV files; "wav": files
    device = ""              # "" = system default; a name (substring) or an index (`stream-tts devices`)
    latency = "high"         # PortAudio's "high" / "low", or seconds
    block_ms = 10.0          # callback block (0 = PortAudio chooses)
    rate_hz = 0              # 0 = the synthesizer's rate; else open the device at this rate (resampled)
    jitter_ms = 80.0         # audio buffered before a sentence starts (unless it is complete)
    preroll_ms = 150.0       # silence played after the stream opens, before any speech
    fade_ms = 4.0            # fade at each sentence edge
    idle_close_s = 5.0       # the stream stays open (fed silence) this long after the last sentence
    policy = "finish-turn"   # or "round-robin": which stream speaks next at a sentence boundary
    turn_hold_s = 1.0        # finish-turn: silence after which another stream may take the floor
    cue = "none"             # "tone": two short blips when the speaking stream changes
    volume = 1.0             # initial gain (0..2); `stream-tts volume N` changes it at run time
    keep_wav = false         # with a device, also write each sentence's WAV
    stall_timeout_s = 10.0   # a sentence whose chunks stop coming is failed after this
    device_timeout_s = 3.0   # no callback this long while open: the device is gone
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from bus.config import unknown_keys
from bus.errors import EngineError
from bus.messages import MAX_VOLUME, AudioChunk
from nodes.playback.device.output import parse_device
from nodes.playback.player import POLICIES

SINKS = ("auto", "wav")
CUES = ("none", "tone")


class PlaybackConfigError(EngineError):
    """A [playback] value of the wrong kind or out of range."""


@dataclass(frozen=True)
class PlaybackSettings:
    sink: str = "auto"
    device: int | str | None = None
    latency: str | float = "high"
    block_ms: float = 10.0
    rate_hz: int = 0
    jitter_ms: float = 80.0
    preroll_ms: float = 150.0
    fade_ms: float = 4.0
    idle_close_s: float = 5.0
    policy: str = "finish-turn"
    turn_hold_s: float = 1.0
    cue: str = "none"
    volume: float = 1.0
    keep_wav: bool = False
    stall_timeout_s: float = 10.0
    device_timeout_s: float = 3.0

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> PlaybackSettings:
        known = {f.name: f for f in fields(cls)}
        if why := unknown_keys("playback", section, known):
            raise PlaybackConfigError(why)
        values: dict[str, Any] = {}
        for name, value in section.items():
            default = known[name].default
            if name == "device":
                try:
                    values[name] = parse_device(value)
                except ValueError as exc:
                    raise PlaybackConfigError(str(exc)) from None
            elif name == "latency":
                ok = value in ("high", "low") or (type(value) in (int, float) and 0 < value < 2)
                if not ok:
                    raise PlaybackConfigError(
                        f'[playback] latency must be "high", "low" or seconds, got {value!r}'
                    )
                values[name] = value
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise PlaybackConfigError(f"[playback] {name} must be true or false, got {value!r}")
                values[name] = value
            elif isinstance(default, int | float):
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise PlaybackConfigError(f"[playback] {name} must be a number >= 0, got {value!r}")
                values[name] = type(default)(value)
            else:
                values[name] = value
        s = cls(**values)
        for name, allowed in (("sink", SINKS), ("policy", POLICIES), ("cue", CUES)):
            if getattr(s, name) not in allowed:
                raise PlaybackConfigError(
                    f"[playback] {name} must be one of {allowed}, got {getattr(s, name)!r}"
                )
        if s.volume > MAX_VOLUME:
            raise PlaybackConfigError(f"[playback] volume must be 0..{MAX_VOLUME}, got {s.volume}")
        return s


def mono_f32(chunk: AudioChunk) -> np.ndarray:
    """The chunk's PCM as mono float32 (s16le scaled to ±1, channels averaged)."""
    if chunk.sample_format == "f32le":
        a = np.frombuffer(chunk.pcm, dtype="<f4").astype(np.float32)
    else:
        a = np.frombuffer(chunk.pcm, dtype="<i2").astype(np.float32) / 32768.0
    if chunk.channels > 1:
        a = a.reshape(-1, chunk.channels).mean(axis=1, dtype=np.float32)
    return a


class Resampler:
    """One sentence's streaming resampler: chunks in, continuous audio out (soxr, HQ)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        import soxr

        self._rs = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, pcm: np.ndarray, last: bool) -> np.ndarray:
        return np.asarray(self._rs.resample_chunk(pcm, last=last), dtype=np.float32)
