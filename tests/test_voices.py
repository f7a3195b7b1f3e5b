"""Voices: `stream-tts voices add` clones from a real WAV through the tiny model's real prompt
front end (Kaldi fbank -> campplus.onnx, whisper log-mel -> speech_tokenizer_v2.onnx, the yaml's
mel extractor), stores it, lists it, and the engine speaks with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from nodes.cosyvoice_engine import CosyVoiceEngine, EngineOptions
from nodes.errors import VoiceError
from nodes.voices import VOICE_FORMAT, PromptFrontend, load_voice, make_voice
from tests.conftest import REPO, write_config

pytestmark = pytest.mark.timeout(180)


def prompt_wav(path: Path, seconds: float = 3.0, rate: int = 22050, pitch_hz: float = 140.0) -> Path:
    """A voiced-sounding test signal: a few harmonics with a slow vibrato, plus a little noise."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = pitch_hz * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2
    x += 0.01 * np.random.default_rng(0).standard_normal(t.size)
    sf.write(path, x.astype(np.float32), rate)
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bus.cli", "voices", *args, "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_voices_add_stores_a_clone_and_lists_it(tmp_path: Path, tiny_models: tuple[Path, Path]) -> None:
    cosy = tiny_models[1]
    config = write_config(tmp_path / "c.toml", tmp_path / "data", synthesize={"model_dir": str(cosy)})
    wav = prompt_wav(tmp_path / "me.wav")
    add = cli(config, "add", "me", str(wav), "こんにちは、テストです。", "--instruct", "ゆっくり話して")
    assert add.returncode == 0, add.stderr
    stored = tmp_path / "data" / "voices" / "me.pt"
    raw = torch.load(stored, weights_only=True)
    assert raw["format"] == VOICE_FORMAT and raw["prompt_text"] == "こんにちは、テストです。"
    assert raw["instruct"] == "ゆっくり話して"
    n = raw["prompt_speech_token"].shape[1]
    assert n == 75  # 3 s: 300 whisper frames, every 4th -> 25 tokens a second
    assert raw["prompt_speech_token"].dtype == torch.int32
    assert raw["prompt_speech_feat"].shape == (1, 2 * n, 80)  # 2 mel frames per token
    assert raw["embedding"].shape == (1, 192) and float(raw["embedding"].abs().sum()) > 0
    listing = cli(
        config,
    )
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert lines[0].startswith("me\tcloned\tこんにちは") and "instruct: ゆっくり話して" in lines[0]
    assert [line.split("\t")[0] for line in lines[1:]] == ["tiny-a", "tiny-b"]


def test_different_recordings_give_different_embeddings(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    fe = PromptFrontend(tiny_models[1])
    a = make_voice(fe, "a", prompt_wav(tmp_path / "a.wav", pitch_hz=120), "はい。")
    b = make_voice(fe, "b", prompt_wav(tmp_path / "b.wav", pitch_hz=220, rate=16000), "はい。")
    assert not torch.equal(a["embedding"], b["embedding"])
    assert not torch.equal(a["prompt_speech_token"], b["prompt_speech_token"])


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("silent", "silent"),
        ("short", "prompt must be"),
        ("transcript", "transcript is empty"),
        ("name", "voice name"),
        ("missing", "cannot read"),
    ],
)
def test_bad_prompts_are_refused_clearly(
    tmp_path: Path, tiny_models: tuple[Path, Path], case: str, match: str
) -> None:
    fe = PromptFrontend(tiny_models[1])
    wav = prompt_wav(tmp_path / "ok.wav")
    name, text = "ok", "はい。"
    if case == "silent":
        sf.write(tmp_path / "ok.wav", np.zeros(48000, np.float32), 16000)
    elif case == "short":
        prompt_wav(wav, seconds=0.2)
    elif case == "transcript":
        text = " 。"
    elif case == "name":
        name = "../evil"
    elif case == "missing":
        wav = tmp_path / "nope.wav"
    with pytest.raises(VoiceError, match=match):
        make_voice(fe, name, wav, text)


def test_engine_speaks_with_a_cloned_voice(tmp_path: Path, tiny_models: tuple[Path, Path]) -> None:
    from nodes.voices import save_voice

    cosy = tiny_models[1]
    folder = tmp_path / "voices"
    save_voice(
        make_voice(PromptFrontend(cosy), "me", prompt_wav(tmp_path / "me.wav"), "こんにちは、テストです。"),
        folder,
    )
    engine = CosyVoiceEngine(cosy, EngineOptions(max_token_text_ratio=4.0, voices_dir=folder))
    assert engine.voices() == ["me", "tiny-a", "tiny-b"]
    cloned = [c.pcm for c in engine.synthesize(["同じ文です。"], "me")]
    plain = [c.pcm for c in engine.synthesize(["同じ文です。"], "tiny-a")]
    audio = np.concatenate(cloned)
    assert audio.size > 0 and np.all(np.isfinite(audio))
    assert audio.shape != np.concatenate(plain).shape or not np.array_equal(audio, np.concatenate(plain))


def test_a_voice_made_with_another_model_is_refused(tmp_path: Path, tiny_models: tuple[Path, Path]) -> None:
    from nodes.voices import save_voice

    record = make_voice(PromptFrontend(tiny_models[1]), "me", prompt_wav(tmp_path / "me.wav"), "はい。")
    record["fingerprint"] = "0" * 16
    path = save_voice(record, tmp_path / "voices")
    with pytest.raises(VoiceError, match="another model"):
        load_voice(path, PromptFrontend(tiny_models[1]).fingerprint)
