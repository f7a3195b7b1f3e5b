"""End to end under real supervisord on the tiny models: `stream-tts up --tiny`, say, hear (WAVs).

The tiny models are random weights in the real formats, so the speech is noise, but every byte
takes the real path: publisher -> ingest -> llama.cpp -> CosyVoice2 modules -> playback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from bus.config import load_config
from bus.messages import TapEvent
from bus.tap import events, subscribe
from tests.conftest import REPO, write_config

pytestmark = pytest.mark.slow


class Pipeline:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.config_path = write_config(
            root / "config.toml", self.data_dir, ingest={"deadline_base_s": 8.0, "deadline_per_char_s": 0.2}
        )
        self.config = load_config(self.config_path, environ={})
        self.events: list[TapEvent] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "stream_tts.cli",
                *args,
                "--config",
                str(self.config_path),
                "--data-dir",
                str(self.data_dir),
            ]
            if args[0] in ("up", "down", "status")
            else [sys.executable, "-m", "stream_tts.cli", *args, "--config", str(self.config_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _watch(self) -> None:
        sock = subscribe(self.config)
        try:
            while not self._stop.is_set():
                for ev in events(sock, 0.5):
                    if ev.kind != "heartbeat":
                        self.events.append(ev)
        finally:
            sock.close(linger=0)

    def played(self) -> list[dict[str, Any]]:
        path = self.data_dir / "played.jsonl"
        return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []

    def wait_played(self, stream: str, n: int, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [r for r in self.played() if r["stream"] == stream]
            if len(got) >= n:
                return got
            time.sleep(0.2)
        raise AssertionError(
            f"{stream}: played {len(got)} of {n} in {timeout} s; events: "
            f"{[(e.node, e.kind, e.detail) for e in self.events if e.kind in ('error', 'failed')]}"
        )


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    p = Pipeline(tmp_path_factory.mktemp("e2e"))
    p._thread.start()
    t0 = time.monotonic()
    up = p.cli("up", "--tiny")
    assert up.returncode == 0, f"up failed:\n{up.stderr}\n{_logs(p.data_dir)}"
    p.up_seconds = time.monotonic() - t0  # type: ignore[attr-defined]
    yield p
    p.cli("down", timeout=60)
    p._stop.set()


def _logs(data_dir: Path) -> str:
    return "\n".join(
        f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}"
        for f in sorted((data_dir / "log").glob("*.log"))
    )


def test_three_sentences_become_three_wavs_in_order_seen_at_every_stage(pipeline: Pipeline) -> None:
    say = pipeline.cli("say", "--stream", "e2e", "The build finished. All tests passed! Shall I push it?")
    assert say.returncode == 0, say.stderr
    played = pipeline.wait_played("e2e", 3, timeout=120)
    assert [r["seq"] for r in played] == [0, 1, 2]
    assert [r["text_en"] for r in played] == ["The build finished.", "All tests passed!", "Shall I push it?"]
    for r in played:
        audio, rate = sf.read(str(r["wav"]), dtype="float32")
        assert rate == r["rate_hz"] and audio.size == r["samples"] > 0
        assert float(np.sqrt(np.mean(audio**2))) > 1e-3, f"silent WAV {r['wav']}"
        assert r["text_ja"], "no Japanese text recorded"
        stages = [s[0] for s in r["stamps"]]
        assert stages[:5] == ["publisher", "ingest", "translate", "synthesize", "playback"][: len(stages)]
        assert stages[-4:] == ["ingest", "translate", "synthesize", "playback"]
    # Each sentence was reported finished by every stage on the tap.
    time.sleep(0.5)
    for seq in range(3):
        nodes = {
            e.node for e in pipeline.events if e.kind == "finished" and e.stream == "e2e" and e.seq == seq
        }
        assert nodes == {"ingest", "translate", "synthesize", "playback"}, (seq, nodes)


def test_status_shows_every_node_ready(pipeline: Pipeline) -> None:
    st = pipeline.cli("status", timeout=60)
    assert st.returncode == 0, st.stdout + st.stderr
    for node in ("tap", "ingest", "translate", "synthesize", "playback"):
        line = next(ln for ln in st.stdout.splitlines() if ln.startswith(node + " "))
        assert "RUNNING" in line and "ready" in line, line


def test_restarting_translate_mid_run_loses_nothing(pipeline: Pipeline) -> None:
    """supervisorctl restart while sentences are coming, then translate away while more are said:
    everything is spoken once, in order (what was sent to the missing stage waits or is re-sent)."""
    conf = pipeline.data_dir / "supervisord.conf"

    def ctl(*args: str) -> str:
        r = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return r.stdout + r.stderr

    say = pipeline.cli(
        "say",
        "--stream",
        "restart",
        "One for the road. Two for the show. Three to get ready. Four to go. Five is the last.",
    )
    assert say.returncode == 0, say.stderr
    pipeline.wait_played("restart", 1, timeout=120)
    assert "started" in ctl("restart", "translate")
    assert "stopped" in ctl("stop", "translate")
    say = pipeline.cli("say", "--stream", "restart", "Six while it is away. Seven as well.")
    assert say.returncode == 0, say.stderr
    time.sleep(1.0)
    assert "started" in ctl("start", "translate")
    played = pipeline.wait_played("restart", 7, timeout=180)
    assert [r["seq"] for r in played] == list(range(7))  # each once, in order
    assert played[5]["text_en"] == "Six while it is away."


def test_a_flood_of_bad_frames_at_every_input_leaves_every_node_running(pipeline: Pipeline) -> None:
    from bench.fuzz_nodes import fuzz

    res = fuzz(pipeline.config, frames=100_000, seconds=240)
    assert all(n == 100_000 for n in res["sent"].values()), res["sent"]  # none cut short by the time bound
    for node, row in res["nodes"].items():
        assert row["same_pid"], f"{node} restarted"
        assert row["dropped"] == row["sent"] > 0, (node, row)
        assert row["state"] == "ready", (node, row)
    # ... and the pipeline still speaks.
    say = pipeline.cli("say", "--stream", "after-fuzz", "Still speaking.")
    assert say.returncode == 0, say.stderr
    assert pipeline.wait_played("after-fuzz", 1, timeout=120)[0]["text_en"] == "Still speaking."
