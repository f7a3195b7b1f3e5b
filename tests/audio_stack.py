"""Real audio stacks for the playback tests (notes/audio-path.md): ALSA's `file` plugin behind
PortAudio (exact samples, not paced), a private PulseAudio with a null sink (real-time, recorded
from its monitor with parec), and "no device at all". Each gives the env a playback process needs;
sounddevice enumerates devices at import, so the playback always runs as its own process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from bus.messages import AudioChunk, TapEvent, encode
from bus.tap import events, subscribe
from tests.conftest import BusEnv, wait_for

RATE = 24000
ASOUNDRC = """
pcm.!default { type plug  slave { pcm "sinkfile" format S16_LE } }
pcm.sinkfile {
    type file
    slave.pcm { type null }
    file { @func getenv vars [ AUDIO_SINK_FILE ] default "/tmp/alsa-sink.wav" }
    format "wav"
}
"""


def alsa_file_env(root: Path) -> tuple[dict[str, str], Path]:
    """Env whose ALSA default device writes a 16-bit WAV to the returned path (unpaced)."""
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "asound.conf"
    conf.write_text(ASOUNDRC, encoding="utf-8")
    out = root / "out.wav"
    env = {
        "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{conf}",
        "AUDIO_SINK_FILE": str(out),
        "PULSE_SERVER": "unix:/nonexistent",
        "HOME": str(root),
    }
    return env, out


def no_device_env(root: Path) -> dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    return {
        "ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf",
        "PULSE_SERVER": "unix:/nonexistent",
        "HOME": str(root),
    }


class Pulse:
    """A private PulseAudio with a float32 mono null sink at RATE; stopped by PID."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "home").mkdir(parents=True, exist_ok=True)
        (root / "xdg").mkdir(parents=True, exist_ok=True)
        os.chmod(root / "xdg", 0o700)
        self.sock = root / "pulse.sock"
        self.env = {
            "HOME": str(root / "home"),
            "XDG_RUNTIME_DIR": str(root / "xdg"),
            "PULSE_SERVER": f"unix:{self.sock}",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "--system=false",
                "-n",
                "--exit-idle-time=-1",
                "--disallow-exit",
                "--use-pid-file=no",
                "--disable-shm=yes",
                f"--load=module-native-protocol-unix auth-anonymous=1 socket={self.sock}",
                f"--load=module-null-sink sink_name=nullsink format=float32le rate={RATE} channels=1",
                f"--log-target=file:{self.root / 'pulse.log'}",
            ],
            env={**os.environ, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ok = wait_for(lambda: _run_ok(["pactl", "info"], {**os.environ, **self.env}), 10)
        assert ok, "private PulseAudio did not come up"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


def _run_ok(cmd: list[str], env: dict[str, str]) -> bool:
    return subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def have_pulse() -> bool:
    return all(shutil.which(p) for p in ("pulseaudio", "parec", "pactl"))


class Recorder:
    """parec on the null sink's monitor; keeps (wall ns when read, float32 samples) pieces."""

    def __init__(self, pulse: Pulse) -> None:
        self.proc = subprocess.Popen(
            [
                "parec",
                "-d",
                "nullsink.monitor",
                "--format=float32le",
                f"--rate={RATE}",
                "--channels=1",
                "--latency-msec=20",
            ],
            env={**os.environ, **pulse.env},
            stdout=subprocess.PIPE,
        )
        self.pieces: list[tuple[int, bytes]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            data = os.read(fd, 4096)
            if not data:
                return
            self.pieces.append((time.time_ns(), data))

    def samples(self) -> np.ndarray:
        raw = b"".join(d for _, d in self.pieces)
        return np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<f4")

    def wall_of_sample(self, index: int) -> int:
        """When the piece holding sample `index` was read (later than it was played)."""
        seen = 0
        for wall, d in self.pieces:
            seen += len(d)
            if seen // 4 > index:
                return wall
        raise IndexError(index)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._thread.join(timeout=5)


class AudioBusEnv(BusEnv):
    """A BusEnv whose processes get extra environment (the audio stack)."""

    def __init__(self, root: Path, extra_env: dict[str, str]) -> None:
        super().__init__(root)
        self.extra_env = extra_env

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra_env}


class TapLog:
    """Every tap event, collected in the background from before the nodes start."""

    def __init__(self, env: BusEnv) -> None:
        self.sock = subscribe(env.config, zmq.Context.instance())
        self.events: list[TapEvent] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for ev in events(self.sock, 0.2):
                self.events.append(ev)

    def wait(
        self, kind: str, node: str = "playback", n: int = 1, timeout: float = 15.0, **detail: Any
    ) -> list[TapEvent]:
        def found() -> list[TapEvent]:
            return [
                e
                for e in list(self.events)
                if e.kind == kind and e.node == node and all(e.detail.get(k) == v for k, v in detail.items())
            ]

        assert wait_for(lambda: len(found()) >= n, timeout), f"no {n} x {kind} {detail} on the tap"
        return found()

    def heartbeat_count(self, counter: str, node: str = "playback") -> int:
        beats = [e for e in list(self.events) if e.node == node and e.kind == "heartbeat"]
        return int(beats[-1].detail.get(counter, 0)) if beats else 0

    def kinds(self, node: str = "playback") -> list[str]:
        return [e.kind for e in list(self.events) if e.node == node and e.kind != "heartbeat"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close(linger=0)


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Deterministic speech-like float32: a gliding voiced tone with syllable envelopes and noise, so
    that every block of it is unique."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + seed) ** 2
    x = 0.25 * voiced * syllables + 0.01 * rng.standard_normal(n)
    return np.clip(x, -0.95, 0.95).astype(np.float32)


def chunks_of(stream: str, seq: int, pcm: np.ndarray, n: int, **kw: Any) -> list[AudioChunk]:
    parts = np.array_split(pcm, n)
    return [
        AudioChunk(
            stream=stream,
            seq=seq,
            index=i,
            last=i == n - 1,
            rate_hz=RATE,
            pcm=p.astype("<f4").tobytes(),
            text_en=f"{stream} sentence {seq}.",
            text_ja="テスト。",
            **kw,
        )
        for i, p in enumerate(parts)
    ]


def push_socket(env: BusEnv) -> zmq.Socket:
    return env.config.endpoints.connect_socket(zmq.Context.instance(), "playback")


def send(sock: zmq.Socket, chunks: list[AudioChunk]) -> None:
    for c in chunks:
        sock.send_multipart(encode(c))


def find_exact(rec: np.ndarray, want: np.ndarray, start: int = 0, tol: float = 0.0) -> int:
    """Index in rec[start:] where all of `want` appears (within tol), else -1."""
    if want.size == 0:
        return start
    probe = int(np.argmax(np.abs(want[: min(want.size, 2000)])))  # a loud sample pins it down
    cands = np.nonzero(np.abs(rec[start + probe :] - want[probe]) <= tol)[0] + start
    for c in cands:
        seg = rec[c : c + want.size]
        if seg.size == want.size and np.max(np.abs(seg - want)) <= tol:
            return int(c)
    return -1


def iter_blocks(x: np.ndarray, size: int = 240) -> Iterator[tuple[int, np.ndarray]]:
    for i in range(0, x.size - size + 1, size):
        yield i, x[i : i + size]
