"""Shared fixtures: a private port block and data dir per test, real node processes, tiny models."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import tomli_w

from bench.ports import free_ports
from bus.config import Config, load_config
from bus.endpoints import LAYOUT

if TYPE_CHECKING:
    from tests.audio_stack import AudioBusEnv

REPO = Path(__file__).resolve().parent.parent


def tiktoken_file() -> Path:
    """The tiktoken vocabulary CosyVoice ships: a real BPE for random GGUFs with real token counts."""
    import importlib.util

    spec = importlib.util.find_spec("cosyvoice")
    if spec is None or spec.origin is None:
        pytest.skip("cosyvoice (which ships a tiktoken vocabulary) is not installed")
    f = Path(spec.origin).parent / "tokenizer" / "assets" / "multilingual_zh_ja_yue_char_del.tiktoken"
    if not f.is_file():
        pytest.skip(f"{f} missing")
    return f


def write_config(path: Path, data_dir: Path, **sections: dict[str, object]) -> Path:
    """A config TOML with every endpoint on a free loopback port."""
    ports = free_ports(len(LAYOUT))
    raw: dict[str, object] = {
        "data_dir": str(data_dir),
        "endpoints": {name: f"tcp://127.0.0.1:{port}" for name, port in zip(LAYOUT, ports, strict=True)},
        # WAV files, not a sound card: the same outcome on a laptop and on CI (audio tests opt in).
        "playback": {"sink": "wav"},
    }
    raw.update(sections)
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


class BusEnv:
    """One test's private bus: config file, data dir, and the node processes it started."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.config_path = write_config(root / "config.toml", self.data_dir)
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def config(self) -> Config:
        return load_config(self.config_path, environ={})

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_TTS_")}
        env["STREAM_TTS_CONFIG"] = str(self.config_path)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def set_sections(self, **sections: object) -> None:
        import tomllib

        raw = tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        raw.update(sections)
        self.config_path.write_text(tomli_w.dumps(raw), encoding="utf-8")

    def start(self, *args: str, log_name: str | None = None) -> subprocess.Popen[bytes]:
        """`python -m stream_tts.cli ARGS` as a real process (e.g. "node", "ingest"; "tap-proxy").
        Ingest acknowledges producers' text on the tap: starting it starts the tap proxy first,
        unless this test runs one already."""
        if args == ("node", "ingest") and not any(list(p.args)[3:4] == ["tap-proxy"] for p in self.procs):  # type: ignore[arg-type]
            self.start("tap-proxy")
        name = log_name or "-".join(args)
        log = (self.root / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_tts.cli", *args],
            env=self.env(),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        p = self.root / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def bus_env(tmp_path: Path) -> Iterator[BusEnv]:
    env = BusEnv(tmp_path)
    yield env
    env.stop_all()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(tiny qwen2 GGUF, tiny CosyVoice2 folder), built once per test session."""
    from stream_tts.tiny import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_v1(tiny_models: tuple[Path, Path]) -> Path:
    """A tiny CosyVoice v1 folder (CosyVoice-300M-SFT layout, speakers 中文女 中文男 日语男), written
    beside the other tiny models as `stream-tts models tiny` does, once per test session."""
    from stream_tts.tiny import build_tiny_cosyvoice1

    return build_tiny_cosyvoice1(tiny_models[0].parent)


def wait_for(pred: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def stream_tts(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`stream-tts ARGS` as a user runs it, with no STREAM_TTS_* settings leaking in from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_TTS_")}
    return subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def file_env(tmp_path: Path) -> Iterator[tuple[AudioBusEnv, Path]]:
    """A bus env whose playback plays into ALSA's file plugin (exact samples, written to the
    returned path): tests/audio_stack.py."""
    from tests.audio_stack import AudioBusEnv, alsa_file_env

    extra, out = alsa_file_env(tmp_path / "alsa")
    env = AudioBusEnv(tmp_path, extra)
    yield env, out
    env.stop_all()
