"""The synthesize engine: real streaming inference of CosyVoice2's modules on the tiny model.

Sizes are exact: a chunk of h tokens is 2h mel frames, 480 samples each at 24 kHz, minus the 8
frames held back for the next chunk's cross-fade."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nodes.synthesize.cosyvoice.device import VERDICT_FILE, candidates, choose, lm_step_ms, move, verdict_key
from nodes.synthesize.cosyvoice.engine import (
    CosyVoiceEngine,
    EngineOptions,
    SpeechChunk,
    TextFeed,
    split_text,
    text_script,
)
from nodes.synthesize.errors import NothingToSay, SynthesisCancelled, SynthesisTimeout, UnknownVoice

pytestmark = pytest.mark.timeout(120)
SPM = 480  # samples per mel frame
HELD = 8  # mel frames kept for the cross-fade
FAST: dict[str, Any] = {
    "max_token_text_ratio": 4.0
}  # the random LM never says eos: keep its utterances short


@pytest.fixture(scope="module")
def engine(tiny_models: tuple[Path, Path]) -> CosyVoiceEngine:
    torch.set_num_threads(2)
    return CosyVoiceEngine(tiny_models[1], EngineOptions(**FAST))


def run(engine: CosyVoiceEngine, pieces, voice: str = "", **opts) -> list[SpeechChunk]:
    engine.options = EngineOptions(**{**FAST, **opts})
    return list(engine.synthesize(pieces, voice))


def test_streams_float32_chunks_with_last_flag_on_the_final_one(engine: CosyVoiceEngine) -> None:
    chunks = run(engine, ["テストを実行します、", "ファイルを保存しました。"])
    assert engine.sample_rate_hz == 24000
    assert len(chunks) >= 2
    assert [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    for c in chunks:
        assert c.pcm.dtype == np.float32 and c.pcm.ndim == 1 and c.pcm.size > 0
        assert np.all(np.isfinite(c.pcm))
    audio = np.concatenate([c.pcm for c in chunks])
    assert float(np.sqrt(np.mean(audio**2))) > 1e-3  # not silence
    hop = engine.options.first_hop_tokens
    assert chunks[0].timings["lm_steps"] >= hop + 3  # first hop + lookahead tokens before audio


@pytest.mark.parametrize("first_hop", [5, 15, 25])
def test_first_hop_sets_the_first_chunk_size(engine: CosyVoiceEngine, first_hop: int) -> None:
    chunks = run(
        engine, ["テストを実行します。ファイルを保存しました。"], first_hop_tokens=first_hop, hop_tokens=10
    )
    assert chunks[0].pcm.size == (2 * first_hop - HELD) * SPM
    assert all(c.pcm.size == 2 * 10 * SPM for c in chunks[1:-1])  # later hops: exactly hop_tokens


def test_smaller_first_hop_gives_earlier_audio(engine: CosyVoiceEngine) -> None:
    def first_chunk_s(hop: int) -> float:
        engine.options = EngineOptions(**FAST, first_hop_tokens=hop)
        t0 = time.perf_counter()
        next(iter(engine.synthesize(["テストを実行します。ファイルを保存しました。"])))
        return time.perf_counter() - t0

    first_chunk_s(5)  # warm up
    assert min(first_chunk_s(5) for _ in range(2)) < min(first_chunk_s(25) for _ in range(2))


def test_same_text_same_audio(engine: CosyVoiceEngine) -> None:
    a = np.concatenate([c.pcm for c in run(engine, ["同じ文です。"])])
    b = np.concatenate([c.pcm for c in run(engine, ["同じ文です。"])])
    np.testing.assert_array_equal(a, b)


def test_speakers_differ(engine: CosyVoiceEngine) -> None:
    assert engine.voices() == ["tiny-a", "tiny-b"]
    a = np.concatenate([c.pcm for c in run(engine, ["同じ文です。"], "tiny-a")])
    b = np.concatenate([c.pcm for c in run(engine, ["同じ文です。"], "tiny-b")])
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_instruct_text_changes_the_speech(engine: CosyVoiceEngine) -> None:
    plain = np.concatenate([c.pcm for c in run(engine, ["同じ文です。"])])
    styled = np.concatenate([c.pcm for c in run(engine, ["同じ文です。"], instruct="明るく話してください")])
    assert styled.size > 0 and (styled.shape != plain.shape or not np.array_equal(styled, plain))


def test_clauses_stream_into_one_utterance_first_audio_before_last_clause(engine: CosyVoiceEngine) -> None:
    engine.options = EngineOptions(**FAST, first_hop_tokens=5)
    feed = TextFeed()
    got: list[SpeechChunk] = []
    first = threading.Event()

    def consume() -> None:
        for c in engine.synthesize(feed):
            got.append(c)
            first.set()

    worker = threading.Thread(target=consume)
    feed.put("テストを実行します、")
    worker.start()
    assert first.wait(30), "no audio before the second clause"
    assert not got[-1].last
    feed.put("ファイルを保存しました。")
    feed.close()
    worker.join(60)
    assert got[-1].last
    assert {c.utterance for c in got} == {0}  # one utterance, not one per clause


def test_deadline_when_the_next_clause_never_comes(engine: CosyVoiceEngine) -> None:
    engine.options = EngineOptions(**FAST, deadline_s=1.5)
    feed = TextFeed()
    feed.put("こんにちは、")
    t0 = time.monotonic()
    with pytest.raises(SynthesisTimeout):
        list(engine.synthesize(feed))
    assert time.monotonic() - t0 < 1.5 + 2.0


def test_deadline_when_synthesis_is_too_slow(engine: CosyVoiceEngine) -> None:
    t0 = time.monotonic()
    with pytest.raises(SynthesisTimeout):
        run(engine, ["とても長い文章です。" * 10], deadline_s=0.3, max_token_text_ratio=20.0)
    assert time.monotonic() - t0 < 0.3 + 2.0


@pytest.mark.parametrize("when", ["speaking", "waiting for text"])
def test_cancel_stops_the_synthesis(engine: CosyVoiceEngine, when: str) -> None:
    engine.options = EngineOptions(**FAST, first_hop_tokens=5)
    feed = TextFeed()
    feed.put("テストを実行します、")
    gen = engine.synthesize(feed)
    next(gen)  # the first chunk comes after 5 text tokens: the engine is mid-sentence
    if when == "waiting for text":
        threading.Timer(0.5, feed.cancel).start()
    else:
        feed.cancel()
    t0 = time.monotonic()
    with pytest.raises(SynthesisCancelled):
        list(gen)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("pieces", [[], [""], ["   ", "\n"], ["……！？", "「」"], ["---", "***"]])
def test_nothing_speakable_is_refused_before_the_model_runs(
    engine: CosyVoiceEngine, pieces: list[str]
) -> None:
    with pytest.raises(NothingToSay):
        run(engine, pieces)


def test_symbols_around_speech_are_kept(engine: CosyVoiceEngine) -> None:
    chunks = run(engine, ["「", "はい。", "」"])
    assert chunks[-1].last and sum(c.pcm.size for c in chunks) > 0


def test_very_long_text_is_split_into_several_utterances(engine: CosyVoiceEngine) -> None:
    text = "これは長い文です、" * 12 + "終わり。"
    chunks = run(engine, [text], max_text_tokens=20, max_token_text_ratio=3.5, deadline_s=60.0)
    assert max(c.utterance for c in chunks) >= 2
    assert [c.last for c in chunks].count(True) == 1 and chunks[-1].last
    assert all(c.pcm.size > 0 for c in chunks)


def test_wrong_language_text_is_spoken_as_it_is(engine: CosyVoiceEngine) -> None:
    chunks = run(engine, ["The build passed."])
    assert chunks[-1].last and sum(c.pcm.size for c in chunks) > 0
    assert text_script("The build passed.") == "latin"
    assert text_script("ビルドが通りました。") == "ja"
    assert text_script("构建通过") == "cjk"
    assert text_script("……") == ""


def test_unknown_voice_is_an_error(engine: CosyVoiceEngine) -> None:
    with pytest.raises(UnknownVoice, match="nobody"):
        run(engine, ["こんにちは。"], "nobody")


def test_split_text_cuts_at_punctuation_then_characters() -> None:
    def count(s: str) -> int:
        return len(s)

    assert split_text("短い。", count, 10) == ["短い。"]
    assert split_text("一二三、四五六。七八九。", count, 8) == ["一二三、四五六。", "七八九。"]
    parts = split_text("あ" * 25, count, 10)
    assert parts == ["あ" * 10, "あ" * 10, "あ" * 5]


def test_options_refuse_hops_smaller_than_the_crossfade() -> None:
    with pytest.raises(ValueError, match="at least 5"):
        EngineOptions(first_hop_tokens=4)


# ---- device "auto": MPS measured against the CPU. Nothing here has MPS: the CPU side is measured
# for real on the tiny model, the MPS side (a timing, or a device that refuses) is the fake edge.
def test_lm_step_ms_times_real_lm_steps_on_the_cpu(engine: CosyVoiceEngine) -> None:
    assert 0 < lm_step_ms(engine.model) < 1000
    assert (engine.device_choice.device, engine.device_choice.why) == ("cpu", "only candidate")


def test_auto_keeps_the_faster_of_mps_and_cpu_and_remembers_the_verdict(
    engine: CosyVoiceEngine, tmp_path: Path
) -> None:
    model, key = engine.model, verdict_key(engine.model)
    measured: list[str] = []

    def measure(mps_ms: float) -> Callable[[str], float]:
        def on(device: str) -> float:
            measured.append(device)
            return lm_step_ms(move(model, "cpu")) if device == "cpu" else mps_ms

        return on

    cpu_ms = lm_step_ms(model)
    slow_mps = choose(["mps", "cpu"], measure(cpu_ms * 100), tmp_path / "a", key)
    assert (slow_mps.device, slow_mps.why) == ("cpu", "measured")
    assert slow_mps.ms_per_step["mps"] == round(cpu_ms * 100, 3)
    assert 0 < slow_mps.ms_per_step["cpu"] < cpu_ms * 100
    fast_mps = choose(["mps", "cpu"], measure(cpu_ms / 100), tmp_path / "b", key)
    assert (fast_mps.device, fast_mps.why) == ("mps", "measured") and measured == ["mps", "cpu"] * 2
    # a restart finds the verdict in the data dir and measures nothing
    measured.clear()
    again = choose(["mps", "cpu"], measure(cpu_ms * 100), tmp_path / "b", key)
    assert (again.device, again.why, again.ms_per_step) == ("mps", "cached", fast_mps.ms_per_step)
    assert measured == []
    # another torch version (or another model) is measured afresh, beside the first verdict
    assert f"torch {torch.__version__}" in key and model.fingerprint in key
    other_torch = key.replace(torch.__version__, "9.9")
    upgraded = choose(["mps", "cpu"], measure(cpu_ms * 100), tmp_path / "b", other_torch)
    assert (upgraded.device, upgraded.why, measured) == ("cpu", "measured", ["mps", "cpu"])
    stored = json.loads((tmp_path / "b" / VERDICT_FILE).read_text(encoding="utf-8"))
    assert {v["device"] for v in stored.values()} == {"mps", "cpu"} and len(stored) == 2
    # a torn file is measured over and rewritten
    (tmp_path / "a" / VERDICT_FILE).write_text("{not json", encoding="utf-8")
    measured.clear()
    assert choose(["mps", "cpu"], measure(cpu_ms / 100), tmp_path / "a", key).why == "measured"
    assert measured == ["mps", "cpu"]
    assert key in json.loads((tmp_path / "a" / VERDICT_FILE).read_text("utf-8"))


def test_auto_with_an_mps_that_cannot_run_the_model_keeps_the_cpu_and_says_why(
    tiny_models: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)  # a Mac, as far as torch says
    assert candidates("auto") == ["mps", "cpu"] and candidates("cpu") == ["cpu"]
    e = CosyVoiceEngine(tiny_models[1], EngineOptions(**FAST, state_dir=tmp_path))
    choice = e.device_choice
    assert (choice.device, choice.why, list(choice.ms_per_step)) == ("cpu", "measured", ["cpu"])
    assert choice.errors["mps"].startswith("RuntimeError") and "mps" in choice.errors["mps"]  # no MPS build
    assert e.model.device.type == "cpu" and all(
        p.device.type == "cpu" for m in (e.model.llm, e.model.flow, e.model.hift) for p in m.parameters()
    )
    assert list(e.synthesize(["はい。"]))[-1].last
    assert not (tmp_path / VERDICT_FILE).exists()  # a device that failed is tried again next start
    # an explicit device in the config is taken as it is, unmeasured
    explicit = CosyVoiceEngine(tiny_models[1], EngineOptions(**FAST, device="cpu", state_dir=tmp_path))
    assert explicit.device_choice.as_event() == {
        "device": "cpu",
        "why": "config",
        "ms_per_step": {},
        "errors": {},
    }


def test_speed_scales_the_audio_by_the_flows_durations_not_by_resampling(engine: CosyVoiceEngine) -> None:
    """The same sentence (same seed: the same speech tokens) at speed 2 lasts half as long and at
    0.5 twice as long, within a frame per chunk; the vocoder still makes the audio from mel frames
    (so the pitch is the voice's), only fewer or more of them."""
    text = ["テストを実行しました、ファイルを保存しました。"]
    length = {s: sum(c.pcm.size for c in engine.synthesize(list(text), speed=s)) for s in (1.0, 2.0, 0.5)}
    assert length[1.0] > 0
    assert abs(length[2.0] / length[1.0] - 0.5) < 0.08, length
    assert abs(length[0.5] / length[1.0] - 2.0) < 0.25, length
