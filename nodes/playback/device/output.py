"""The real sound device: `SoundDeviceOutput` is the `AudioOutput` of nodes/playback/engine.py on
sounddevice (PortAudio). sounddevice is imported lazily and only here: a machine without PortAudio,
or with no output device, gets `NoAudioDevice` and the node falls back to WAV files. PortAudio
enumerates devices once per initialisation; `rescan()` re-initialises it after a device vanished.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import numpy as np

from nodes.playback.engine import (
    AudioDeviceError,
    AudioOutput,
    DeviceLost,
    NoAudioDevice,
    OpenInfo,
    Render,
)

__all__ = ["AudioDeviceError", "AudioOutput", "DeviceLost", "NoAudioDevice", "OpenInfo", "Render"]

MAX_DAC_DELAY_S = 2.0  # a reported output delay beyond this is nonsense: use the stream latency
CLOSE_TIMEOUT_S = 2.0  # a stream of a dead device may hang in close(): give up waiting after this


def _sd() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # libportaudio2 missing
        raise NoAudioDevice(f"PortAudio is not installed ({exc})") from None
    return sounddevice


def parse_device(value: object) -> int | str | None:
    """Config's `device`: "" or absent = system default, an int (or digits) = index, else a name."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"[playback] device must be a name or an index, got {value!r}")
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


class SoundDeviceOutput:
    """A sounddevice.OutputStream with a callback, float32, opened at the caller's rate when the
    device takes it (else the device's default rate, and `rate_hz` says so)."""

    def __init__(
        self,
        device: int | str | None = None,
        latency: str | float = "high",
        block_ms: float = 10.0,
        rate_hz: int = 0,
    ) -> None:
        self.device = device
        self.forced_rate = rate_hz  # 0: the caller's rate when the device takes it
        self.latency = latency
        self.block_ms = block_ms
        self._stream: Any = None
        self._render: Render | None = None
        self._latency_s = 0.0
        self._underflows = 0
        self._failure: str | None = None
        self._closing = False
        self.last_callback_mono = 0.0

    def probe(self) -> str:
        sd = _sd()
        try:
            info = sd.query_devices(self.device, kind="output")
        except (sd.PortAudioError, ValueError) as exc:
            what = "the default output device" if self.device is None else f"output device {self.device!r}"
            raise NoAudioDevice(f"{what} is not available ({exc})") from None
        return str(info["name"])

    def open(self, rate_hz: int, render: Render) -> OpenInfo:
        sd = _sd()
        name = self.probe()
        rate, channels = self.forced_rate or rate_hz, 1
        if not self._supports(sd, rate, 1):
            if self._supports(sd, rate, 2):
                channels = 2
            else:
                rate = int(sd.query_devices(self.device, kind="output")["default_samplerate"])
                channels = 1 if self._supports(sd, rate, 1) else 2
        self._render = render
        self._failure = None
        self._closing = False
        blocksize = round(rate * self.block_ms / 1000) if self.block_ms > 0 else 0
        try:
            stream = sd.OutputStream(
                samplerate=rate,
                channels=channels,
                dtype="float32",
                device=self.device,
                latency=self.latency,
                blocksize=blocksize,
                callback=self._callback,
                finished_callback=self._finished,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise NoAudioDevice(f"cannot open {name!r} at {rate} Hz: {exc}") from None
        self._stream = stream
        self._latency_s = float(stream.latency)
        self.last_callback_mono = time.monotonic()
        return OpenInfo(name, rate, channels, self._latency_s, blocksize)

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        self._closing = True
        # A dead device's stream can block in abort/close: do it aside, wait a bounded time.
        t = threading.Thread(target=_close_quietly, args=(stream,), daemon=True)
        t.start()
        t.join(CLOSE_TIMEOUT_S)

    def failure(self) -> str | None:
        if self._stream is None:
            return None
        if self._failure is None and not self._stream.active:
            self._failure = "the output stream stopped"
        return self._failure

    def underflows(self) -> int:
        return self._underflows

    # ---- the device's thread ----------------------------------------------------------------
    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        now_ns = time.time_ns()
        self.last_callback_mono = time.monotonic()
        if status.output_underflow:
            self._underflows += 1
        delay = time_info.outputBufferDacTime - time_info.currentTime
        if not 0.0 <= delay < MAX_DAC_DELAY_S:
            delay = self._latency_s
        assert self._render is not None
        try:
            block = self._render(frames, now_ns + int(delay * 1e9))
        except Exception as exc:  # a bug in render must not kill the device thread silently
            outdata.fill(0)
            self._failure = f"render failed: {type(exc).__name__}: {exc}"
            raise _sd().CallbackAbort from exc
        outdata[:] = block[:, None]

    def _finished(self) -> None:
        if not self._closing and self._failure is None:
            self._failure = "the device stopped the stream (unplugged, or its sound server went away)"

    def _supports(self, sd: Any, rate: int, channels: int) -> bool:
        try:
            sd.check_output_settings(device=self.device, samplerate=rate, channels=channels, dtype="float32")
            return True
        except (sd.PortAudioError, ValueError):
            return False


def _close_quietly(stream: Any) -> None:
    with contextlib.suppress(Exception):
        stream.abort()
    with contextlib.suppress(Exception):
        stream.close()


def rescan() -> None:
    """Re-initialise PortAudio so that it enumerates devices again (after one vanished or came)."""
    sd = _sd()
    with contextlib.suppress(Exception):
        sd._terminate()
    sd._initialize()


def list_devices() -> list[dict[str, Any]]:
    """Every output device PortAudio sees: index, name, host API, channels, rate, default mark."""
    sd = _sd()
    try:
        default_out = sd.default.device[1]
    except (sd.PortAudioError, IndexError, TypeError):
        default_out = -1
    apis = sd.query_hostapis()
    out = []
    for dev in sd.query_devices():
        if dev["max_output_channels"] <= 0:
            continue
        out.append(
            {
                "index": dev["index"],
                "name": dev["name"],
                "hostapi": apis[dev["hostapi"]]["name"],
                "channels": dev["max_output_channels"],
                "default_rate_hz": int(dev["default_samplerate"]),
                "default": dev["index"] == default_out,
            }
        )
    return out
