"""The player: what the sound device hears, block by block. Pure numpy; the audio thread calls
`render`, the node thread calls everything else; one lock, held briefly, is all they share.

Sentences wait here until they can play: one at a time and whole, each stream's in seq order,
with `policy` choosing the next stream at a sentence boundary ("finish-turn": the stream that
spoke last keeps the floor while it has more to say, or until `turn_hold_s` of silence;
"round-robin": the stream that waited longest goes next). Which seqs get here, and when, is the
node's call (the rule of nodes/playback/seq_order.py, shared with the WAV sink): a sentence is given its
place (`enqueue`) when its turn comes, before its audio, and a stream waits for the sentence at its
head; the player never waits for a seq it was not given. A sentence starts once its jitter
buffer holds `jitter_ms` (or it is complete, or flushed). Edge fades are written into the
sentence's own first and last `fade_ms`; pause, resume, cancel and volume ramp the output gain, so
nothing clicks. What the node must learn (a sentence started, a sentence's last sample is out with
its DAC times, the buffer ran dry) comes out of `events()`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from nodes.playback.seq_order import lowest_per_stream

Key = tuple[str, int, int]  # (stream, seq, attempt)
POLICIES = ("finish-turn", "round-robin")
CUE_HZ = (880.0, 1320.0)  # two short blips: a stream change, not speech
CUE_BLIP_S = 0.06
CUE_GAP_S = 0.04
CUE_LEVEL = 0.15


@dataclass(frozen=True)
class PlayerSettings:
    rate_hz: int
    jitter_ms: float = 80.0
    fade_ms: float = 4.0
    preroll_ms: float = 150.0
    policy: str = "finish-turn"
    turn_hold_s: float = 1.0
    cue: bool = False


@dataclass(frozen=True)
class Started:
    key: Key
    first_dac_ns: int


@dataclass(frozen=True)
class Done:
    """The last sample of `key` leaves the device at last_dac_ns (wall clock)."""

    key: Key
    samples: int
    first_dac_ns: int
    last_dac_ns: int
    chunk_out: tuple[tuple[int, int, int], ...]  # (chunk index, arrival wall ns, first sample DAC wall ns)


@dataclass(frozen=True)
class Starved:
    key: Key
    at_sample: int


Event = Started | Done | Starved


def edge_fades(pcm: np.ndarray, fade_n: int) -> np.ndarray:
    """`pcm` with a linear fade-in over its first and fade-out over its last fade_n samples."""
    out = np.array(pcm, dtype=np.float32, copy=True)
    n = min(fade_n, out.size // 2)
    if n > 0:
        ramp = _ramp(n)
        out[:n] *= ramp
        out[-n:] *= ramp[::-1]
    return out


def cue_tone(rate_hz: int) -> np.ndarray:
    """The stream-change cue: two short faded blips."""
    parts = []
    for hz in CUE_HZ:
        t = np.arange(int(CUE_BLIP_S * rate_hz)) / rate_hz
        parts.append(edge_fades(CUE_LEVEL * np.sin(2 * np.pi * hz * t), int(0.005 * rate_hz)))
        parts.append(np.zeros(int(CUE_GAP_S * rate_hz), np.float32))
    return np.concatenate(parts).astype(np.float32)


def _ramp(n: int) -> np.ndarray:
    return ((np.arange(n, dtype=np.float64) + 0.5) / n).astype(np.float32)


class _Growable:
    def __init__(self) -> None:
        self.data = np.zeros(8192, np.float32)
        self.n = 0

    def append(self, x: np.ndarray) -> None:
        if self.n + x.size > self.data.size:
            bigger = np.zeros(max(self.data.size * 2, self.n + x.size), np.float32)
            bigger[: self.n] = self.data[: self.n]
            self.data = bigger
        self.data[self.n : self.n + x.size] = x
        self.n += x.size


@dataclass
class _Sentence:
    key: Key
    arrived_mono_ns: int
    buf: _Growable = field(default_factory=_Growable)
    marks: list[tuple[int, int, int]] = field(default_factory=list)  # (offset, index, arrival wall ns)
    out_marks: list[tuple[int, int, int]] = field(default_factory=list)
    complete: bool = False
    forced: bool = False
    pos: int = 0
    first_dac_ns: int = 0
    starving: bool = False

    @property
    def stream(self) -> str:
        return self.key[0]

    @property
    def seq(self) -> int:
        return self.key[1]


class Player:
    """Thread-safe sentence queue + renderer. See the module docstring for the rules."""

    def __init__(self, settings: PlayerSettings, volume: float = 1.0, paused: bool = False) -> None:
        if settings.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {settings.policy!r}")
        self.s = settings
        self.rate = settings.rate_hz
        self._lock = threading.Lock()
        self._queue: list[_Sentence] = []
        self._cur: _Sentence | None = None
        self._events: deque[Event] = deque()
        self._fade_n = max(0, round(settings.fade_ms * self.rate / 1000))
        self._gate_step = 1.0 / max(1, self._fade_n)
        self._jitter_n = round(settings.jitter_ms * self.rate / 1000)
        self._preroll_left = round(settings.preroll_ms * self.rate / 1000)
        self._cue = cue_tone(self.rate) if settings.cue else np.zeros(0, np.float32)
        self._cue_pos = self._cue.size  # >= size: no cue playing
        self._gate = 0.0 if paused else 1.0
        self._paused = paused
        self._cancel_cur = False
        self._vol = self._vol_target = float(volume)
        self._last_stream: str | None = None
        self._last_end_mono_ns = 0
        self._spoke_at: dict[str, int] = {}  # stream -> mono ns its last sentence started
        self.starvations = 0

    # ---- node side ----------------------------------------------------------------------------
    def enqueue(self, key: Key) -> None:
        """Give sentence `key` its place in its stream's order before any of its audio is here."""
        with self._lock:
            if self._find(key) is None:
                self._queue.append(_Sentence(key, time.monotonic_ns()))

    def add(self, key: Key, pcm: np.ndarray, index: int, last: bool, arrival_wall_ns: int) -> None:
        """Append the next chunk (in order, at the player's rate) of sentence `key`."""
        with self._lock:
            s = self._find(key)
            if s is None:
                s = _Sentence(key, time.monotonic_ns())
                self._queue.append(s)
            start = s.buf.n
            s.marks.append((start, index, arrival_wall_ns))
            s.buf.append(np.asarray(pcm, dtype=np.float32))
            if start < self._fade_n:  # the fade-in, written into the samples as they arrive
                end = min(self._fade_n, s.buf.n)
                s.buf.data[start:end] *= _ramp(self._fade_n)[start:end]
            if last:
                s.complete = True
                n = min(self._fade_n, s.buf.n // 2)
                lo = max(s.buf.n - n, s.pos)  # never touch what has already been played
                if n and lo < s.buf.n:
                    s.buf.data[lo : s.buf.n] *= _ramp(n)[::-1][lo - (s.buf.n - n) :]

    def cancel(self, stream: str = "") -> list[Key]:
        """Drop every sentence of `stream` ("" = all); the one playing fades out first."""
        with self._lock:
            dropped = [s.key for s in self._queue if not stream or s.stream == stream]
            self._queue = [s for s in self._queue if stream and s.stream != stream]
            if self._cur is not None and (not stream or self._cur.stream == stream):
                dropped.append(self._cur.key)
                if self._paused or self._gate <= 0.0:
                    self._cur = None
                else:
                    self._cancel_cur = True
            if not stream:
                self._cue_pos = self._cue.size
            return dropped

    def drop(self, key: Key) -> bool:
        """Drop one sentence (a failure); True if it was held."""
        with self._lock:
            if self._cur is not None and self._cur.key == key:
                self._cur = None
                return True
            before = len(self._queue)
            self._queue = [s for s in self._queue if s.key != key]
            return len(self._queue) != before

    def flush(self, stream: str = "") -> None:
        """Start held sentences now, jitter buffer or not."""
        with self._lock:
            for s in self._queue:
                if not stream or s.stream == stream:
                    s.forced = True

    def pause(self) -> None:
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    def set_volume(self, level: float) -> None:
        with self._lock:
            self._vol_target = float(level)

    def events(self) -> list[Event]:
        out = []
        while self._events:
            out.append(self._events.popleft())
        return out

    def busy(self) -> bool:
        with self._lock:
            return self._cur is not None or bool(self._queue) or self._cue_pos < self._cue.size

    def held(self) -> list[Key]:
        with self._lock:
            return [s.key for s in ([self._cur] if self._cur else []) + self._queue]

    def starving_since(self) -> tuple[Key, int] | None:
        """(key, at which sample) of the sentence in hand if it waits for chunks."""
        with self._lock:
            cur = self._cur
            return (cur.key, cur.pos) if cur is not None and cur.starving else None

    # ---- audio thread -------------------------------------------------------------------------
    def render(self, frames: int, dac_wall_ns: int) -> np.ndarray:
        """The next `frames` samples; the first leaves the device at dac_wall_ns."""
        out = np.zeros(frames, np.float32)
        with self._lock:
            stopping = self._paused or self._cancel_cur
            mid_cue = 0 < self._cue_pos < self._cue.size
            if not stopping and not mid_cue and (self._cur is None or self._cur.pos == 0):
                self._gate = 1.0  # nothing cut mid-way: the next sentence brings its own fade-in
            budget = math.ceil(self._gate / self._gate_step) if stopping else frames
            i = self._fill(out, frames, min(frames, budget), dac_wall_ns, stopping)
            if self._cancel_cur and (i >= budget or self._cur is None):
                self._cancel_cur = False
                self._cur = None
            env = self._envelope(frames, stopping)
        if env is not None:
            out *= env
        return out

    def _fill(self, out: np.ndarray, frames: int, budget: int, dac_ns: int, stopping: bool) -> int:
        ns_per = 1e9 / self.rate
        i = 0
        if self._preroll_left > 0:
            k = min(frames, self._preroll_left)
            self._preroll_left -= k
            i = k
        while i < budget:
            if self._cue_pos < self._cue.size:
                k = min(budget - i, self._cue.size - self._cue_pos)
                out[i : i + k] = self._cue[self._cue_pos : self._cue_pos + k]
                self._cue_pos += k
                i += k
                continue
            if self._cur is None:
                if stopping:  # nothing new starts under a closing gate
                    break
                nxt = self._pick(time.monotonic_ns())
                if nxt is None:
                    break
                self._queue.remove(nxt)
                self._cur = nxt
                if self._cue.size and self._last_stream not in (None, nxt.stream):
                    self._cue_pos = 0
                    continue
            s = self._cur
            if s.starving:
                if not (s.complete or s.forced or s.buf.n - s.pos >= self._jitter_n):
                    break
                s.starving = False
            avail = s.buf.n - s.pos
            if avail <= 0 and not s.complete:
                s.starving = True
                self.starvations += 1
                self._events.append(Starved(s.key, s.pos))
                break
            k = min(budget - i, avail)
            at = dac_ns + int(i * ns_per)
            if s.pos == 0 and k > 0:
                s.first_dac_ns = at
                self._spoke_at[s.stream] = time.monotonic_ns()
                self._events.append(Started(s.key, at))
            for off, idx, arr in s.marks:
                if s.pos <= off < s.pos + k or (off == s.pos == s.buf.n):
                    s.out_marks.append((idx, arr, dac_ns + int((i + off - s.pos) * ns_per)))
            out[i : i + k] = s.buf.data[s.pos : s.pos + k]
            s.pos += k
            i += k
            if s.complete and s.pos >= s.buf.n:
                end = dac_ns + int(i * ns_per)
                self._events.append(Done(s.key, s.buf.n, s.first_dac_ns or at, end, tuple(s.out_marks)))
                self._last_stream = s.stream
                self._last_end_mono_ns = time.monotonic_ns()
                self._cur = None
        return i

    def _ready(self, s: _Sentence) -> bool:
        if s.complete:
            return True
        return s.buf.n > 0 and (s.forced or s.buf.n >= self._jitter_n)  # a place without audio waits

    def _pick(self, now_ns: int) -> _Sentence | None:
        heads = lowest_per_stream(self._queue, lambda s: (s.stream, s.seq))
        ready = {stream: s for stream, s in heads.items() if self._ready(s)}
        if not ready:
            return None
        last = self._last_stream
        if self.s.policy == "finish-turn" and last is not None:
            if last in ready:
                return ready[last]
            held_floor = last in heads or now_ns - self._last_end_mono_ns < self.s.turn_hold_s * 1e9
            if held_floor:
                return None
            return min(ready.values(), key=lambda s: s.arrived_mono_ns)
        if self.s.policy == "round-robin":
            return min(ready.values(), key=lambda s: (self._spoke_at.get(s.stream, 0), s.arrived_mono_ns))
        return min(ready.values(), key=lambda s: s.arrived_mono_ns)

    def _envelope(self, frames: int, stopping: bool) -> np.ndarray | None:
        env: np.ndarray | None = None
        target = 0.0 if stopping else 1.0
        if self._gate != target:
            step = -self._gate_step if stopping else self._gate_step
            env = np.clip(self._gate + step * np.arange(1, frames + 1), 0.0, 1.0).astype(np.float32)
            self._gate = float(env[-1])
        if self._vol != self._vol_target or self._vol != 1.0:
            vol = np.linspace(self._vol, self._vol_target, frames, dtype=np.float32)
            self._vol = self._vol_target
            env = vol if env is None else env * vol
        return env

    def _find(self, key: Key) -> _Sentence | None:
        if self._cur is not None and self._cur.key == key:
            return self._cur
        return next((s for s in self._queue if s.key == key), None)
