"""The user's own plan end to end under real supervisord: `[synthesize] model_dir` pointing at a
CosyVoice v1 folder (the CosyVoice-300M-SFT layout, tiny random weights) with one of its built-in
speakers, `voice = "日语男"`. Every byte takes the real path: publisher -> ingest -> llama.cpp
(the tiny GGUF) -> CosyVoice v1's modules -> playback (WAVs at the model's 22 050 Hz). A speaker
the model does not have is an error that names the ones it has, wherever the user looks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bus.config import load_config
from tests.conftest import write_config
from tests.test_e2e import Pipeline, _logs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
KNOWN = "known: 中文女, 中文男, 日语男"


class V1Pipeline(Pipeline):
    """The e2e harness on an explicit config: the tiny GGUF, the tiny v1 folder, a voice."""

    def __init__(self, root: Path, gguf: Path, v1: Path, voice: str) -> None:
        super().__init__(root)
        self.config_path = write_config(
            root / "config.toml",
            self.data_dir,
            ingest={"deadline_base_s": 8.0, "deadline_per_char_s": 0.2},
            translate={"model": str(gguf), "max_tokens": 32},
            synthesize={"model_dir": str(v1), "voice": voice},
        )
        self.config = load_config(self.config_path, environ={})


@pytest.fixture
def started(
    tmp_path: Path, tiny_models: tuple[Path, Path], tiny_v1: Path, request: pytest.FixtureRequest
) -> Iterator[V1Pipeline]:
    p = V1Pipeline(tmp_path, tiny_models[0], tiny_v1, request.param)
    p._thread.start()
    try:
        yield p
    finally:
        p.cli("down", timeout=60)
        p._stop.set()


@pytest.mark.parametrize("started", ["日语男"], indirect=True)
def test_a_named_v1_speaker_says_two_sentences_in_order_at_22050_hz(started: V1Pipeline) -> None:
    p = started
    up = p.cli("up")
    assert up.returncode == 0, f"up failed:\n{up.stderr}\n{_logs(p.data_dir)}"
    say = p.cli("say", "--stream", "v1", "The build finished. All tests passed!")
    assert say.returncode == 0, say.stderr
    played = p.wait_played("v1", 2, timeout=240)
    assert [r["seq"] for r in played] == [0, 1]
    assert [r["text_en"] for r in played] == ["The build finished.", "All tests passed!"]
    for r in played:
        assert r["rate_hz"] == 22050
        audio, rate = sf.read(str(r["wav"]), dtype="float32")
        assert rate == 22050 and audio.size == r["samples"] > 0
        assert float(np.sqrt(np.mean(audio**2))) > 1e-3, f"silent WAV {r['wav']}"
    time.sleep(0.5)
    synth = [e for e in p.events if e.node == "synthesize"]
    engine = next(e for e in synth if e.kind == "engine").detail
    assert engine["model"] == "CosyVoice v1" and engine["rate_hz"] == 22050
    assert engine["voices"] == ["中文女", "中文男", "日语男"]
    voice = next(e for e in synth if e.kind == "voice").detail
    assert (voice["name"], voice["source"], voice["configured"]) == ("日语男", "model", "日语男")
    for seq in (0, 1):  # the tap reports each sentence's first chunk, as for CosyVoice2
        first = [e for e in synth if e.kind == "first_chunk" and e.stream == "v1" and e.seq == seq]
        done = [e for e in synth if e.kind == "finished" and e.stream == "v1" and e.seq == seq]
        assert first and first[0].detail["first_chunk_ms"] > 0
        assert done and done[0].detail["first_chunk_ms"] > 0 and done[0].detail["audio_s"] > 0


@pytest.mark.parametrize("started", ["japanese_female"], indirect=True)
def test_a_speaker_the_model_does_not_have_is_an_error_that_lists_the_real_ones(started: V1Pipeline) -> None:
    p = started
    voices = p.cli("voices")
    assert voices.returncode == 1, voices.stdout + voices.stderr
    for name in ("中文女", "中文男", "日语男"):
        assert f"{name}\tmodel speaker" in voices.stdout
    assert "unknown voice 'japanese_female'" in voices.stderr and KNOWN in voices.stderr
    up = p.cli("up")
    assert up.returncode == 1  # every node settles; synthesize in state error, saying why
    assert "synthesize is error: unknown voice 'japanese_female'" in up.stderr and KNOWN in up.stderr
    status = p.cli("status", timeout=60)
    line = next(ln for ln in status.stdout.splitlines() if ln.startswith("synthesize "))
    assert "RUNNING" in line and "error" in line and KNOWN in line, line
    errors = [e for e in p.events if e.node == "synthesize" and e.kind == "error"]
    assert any(KNOWN in str(e.detail.get("error", "")) for e in errors), errors
