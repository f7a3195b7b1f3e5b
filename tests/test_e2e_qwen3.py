"""The whole pipeline under real supervisord with `[translate] model` pointing at the tiny Qwen3
GGUFs: the dense `qwen3` (hybrid thinking template, thinking switched off) and the
mixture-of-experts `qwen3moe` (the Instruct-2507 template), each speaking through the tiny
CosyVoice2 into WAV files. Like tests/test_e2e.py, with the translator swapped."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bus.config import load_config
from bus.messages import TapEvent
from nodes.translate.llama.tiny import write_tiny_qwen3_gguf
from tests.conftest import REPO, wait_for, write_config
from tests.test_e2e import Pipeline

pytestmark = pytest.mark.slow


class Qwen3Pipeline(Pipeline):
    def __init__(self, root: Path, gguf: Path, cosy: Path, arch: str) -> None:
        self.arch = arch
        self.root = root
        self.data_dir = root / "data"
        self.config_path = write_config(
            root / "config.toml",
            self.data_dir,
            ingest={"deadline_base_s": 8.0, "deadline_per_char_s": 0.2},
            translate={"model": str(gguf), "max_tokens": 48, "n_threads": 1},
            synthesize={"model_dir": str(cosy), "voice": ""},
        )
        self.config = load_config(self.config_path, environ={})
        self.events: list[TapEvent] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)


@pytest.fixture(scope="module", params=["qwen3", "qwen3moe"])
def pipeline(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_models: tuple[Path, Path]
) -> Iterator[Qwen3Pipeline]:
    root = tmp_path_factory.mktemp(f"e2e-{request.param}")
    gguf = write_tiny_qwen3_gguf(root / f"tiny-{request.param}.gguf", moe=request.param == "qwen3moe")
    p = Qwen3Pipeline(root, gguf, tiny_models[1], request.param)
    p._thread.start()
    up = p.cli("up")
    assert up.returncode == 0, f"up failed:\n{up.stderr}"
    yield p
    p.cli("down", timeout=60)
    p._stop.set()


def test_qwen3_translators_speak_through_the_whole_pipeline(pipeline: Qwen3Pipeline) -> None:
    say = pipeline.cli("say", "--stream", "q3", "The build finished. I fixed the bug in setup.py!")
    assert say.returncode == 0, say.stderr
    played = pipeline.wait_played("q3", 2, timeout=180)
    assert [r["seq"] for r in played] == [0, 1]
    assert [r["text_en"] for r in played] == ["The build finished.", "I fixed the bug in setup.py!"]
    for r in played:
        audio, rate = sf.read(str(r["wav"]), dtype="float32")
        assert rate == r["rate_hz"] and audio.size == r["samples"] > 0
        assert float(np.sqrt(np.mean(audio**2))) > 1e-3, f"silent WAV {r['wav']}"
        assert any("\u3040" <= ch <= "\u9fff" for ch in r["text_ja"]), r["text_ja"]
        assert "think" not in r["text_ja"]
        assert [s[0] for s in r["stamps"]][-4:] == ["ingest", "translate", "synthesize", "playback"]
    assert "setup.py" in played[1]["text_ja"]  # protected, put back
    time.sleep(0.5)

    def backends() -> list[TapEvent]:
        return [e for e in pipeline.events if e.node == "translate" and e.kind == "backend"]

    if not wait_for(lambda: bool(backends()), 2):  # said once at start, maybe before the watcher joined
        conf = pipeline.config.data_dir / "supervisord.conf"
        subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), "restart", "translate"],
            capture_output=True,
            timeout=60,
        )
        assert wait_for(lambda: bool(backends()), 60), "no backend event from translate"
    backend = backends()[0]
    arch = pipeline.arch
    assert backend.detail["model_name"] == f"tiny-{arch}-random"
    assert backend.detail["thinking"] == ("none" if arch == "qwen3moe" else "enable_thinking=false")
    finished = [
        e for e in pipeline.events if e.node == "translate" and e.kind == "finished" and e.stream == "q3"
    ]
    assert len(finished) == 2 and all(e.detail.get("thought_chars") == 0 for e in finished)


def test_status_shows_every_node_ready(pipeline: Qwen3Pipeline) -> None:
    st = subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", "status", "--config", str(pipeline.config_path),
         "--data-dir", str(pipeline.data_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert st.returncode == 0, st.stdout + st.stderr
    line = next(ln for ln in st.stdout.splitlines() if ln.startswith("translate "))
    assert "RUNNING" in line and "ready" in line, line
