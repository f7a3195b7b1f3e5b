"""Voices: `stream-tts voices add` clones from a real WAV through the tiny model's real prompt
front end (Kaldi fbank -> campplus.onnx, whisper log-mel -> speech_tokenizer_v2.onnx, the yaml's
mel extractor), stores it, lists it, and the engine speaks with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from bus.messages import Failed, TapEvent
from nodes.synthesize.cosyvoice.engine import CosyVoiceEngine, EngineOptions
from nodes.synthesize.cosyvoice.voices import (
    DEFAULT_ORIGIN,
    DEFAULT_PROMPT,
    DEFAULT_PROMPT_TEXT,
    DEFAULT_VOICE_NAME,
    VOICE_FORMAT,
    PromptFrontend,
    load_voice,
    make_voice,
)
from nodes.synthesize.errors import UnknownVoice, VoiceError
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
        [sys.executable, "-m", "stream_tts.cli", "voices", *args, "--config", str(config)],
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
    from nodes.synthesize.cosyvoice.voices import save_voice

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
    from nodes.synthesize.cosyvoice.voices import save_voice

    record = make_voice(PromptFrontend(tiny_models[1]), "me", prompt_wav(tmp_path / "me.wav"), "はい。")
    record["fingerprint"] = "0" * 16
    path = save_voice(record, tmp_path / "voices")
    with pytest.raises(VoiceError, match="another model"):
        load_voice(path, PromptFrontend(tiny_models[1]).fingerprint)


# ---- cross-lingual voices and the default voice ------------------------------------------------
def speakerless(cosy: Path, dest: Path) -> Path:
    """The tiny model as the released CosyVoice2-0.5B is: no spk2info.pt."""
    dest.mkdir()
    for p in cosy.iterdir():
        if p.name != "spk2info.pt":
            (dest / p.name).symlink_to(p)
    return dest


def write_default_prompt(model: Path) -> Path:
    """A prompt where `stream-tts models fetch` puts the default voice's: 24 kHz float32 mono, 3.5 s."""
    wav = model / DEFAULT_PROMPT
    wav.parent.mkdir(exist_ok=True)
    audio, rate = sf.read(prompt_wav(wav, seconds=3.5, rate=24000, pitch_hz=180), dtype="float32")
    sf.write(wav, audio, rate, subtype="FLOAT")
    return wav


class Seen:
    """What the engine hands the LM driver and the vocoder, recorded on the way to the real ones."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from nodes.synthesize.cosyvoice import stream as cs

        self.lm: list[tuple[list[int], list[int]]] = []
        self.flow: list[tuple[int, int, torch.Tensor]] = []
        real_lm, real_vocoder = cs.speech_tokens, cs.ChunkVocoder

        def speech_tokens(
            model: Any, text: Any, prompt_text: list[int], prompt_speech: list[int], *a: Any, **k: Any
        ) -> Any:
            self.lm.append((list(prompt_text), list(prompt_speech)))
            return real_lm(model, text, prompt_text, prompt_speech, *a, **k)

        def vocoder(model: Any, embedding: Any, token: Any, feat: Any, *a: Any, **k: Any) -> Any:
            self.flow.append((int(token.shape[1]), int(feat.shape[1]), embedding))
            return real_vocoder(model, embedding, token, feat, *a, **k)

        monkeypatch.setattr(cs, "speech_tokens", speech_tokens)
        monkeypatch.setattr(cs, "ChunkVocoder", vocoder)


def test_a_cross_lingual_voice_keeps_its_prompt_out_of_the_lm_and_in_the_flow(
    tmp_path: Path, tiny_models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nodes.synthesize.cosyvoice.voices import save_voice

    cosy, folder = tiny_models[1], tmp_path / "voices"
    fe = PromptFrontend(cosy)
    wav = prompt_wav(tmp_path / "zh.wav")
    same = make_voice(fe, "same", wav, "希望你以后能够做的比我还好呦。")
    cross = make_voice(fe, "cross", wav, "希望你以后能够做的比我还好呦。", cross_lingual=True)
    for record in (same, cross):
        save_voice(record, folder)
    engine = CosyVoiceEngine(cosy, EngineOptions(max_token_text_ratio=4.0, voices_dir=folder))
    seen = Seen(monkeypatch)
    for name in ("same", "cross"):
        audio = np.concatenate([c.pcm for c in engine.synthesize(["同じ文です。"], name)])
        assert audio.size > 0 and np.all(np.isfinite(audio))
    n = int(same["prompt_speech_token"].shape[1])
    # the same-language clone: transcript and prompt speech tokens lead the LM, as in zero-shot
    assert seen.lm[0] == (engine.encode(same["prompt_text"]), same["prompt_speech_token"][0].tolist())
    # cross-lingual: the LM sees neither (upstream's inference_cross_lingual) ...
    assert seen.lm[1] == ([], [])
    # ... while the flow is conditioned on the prompt exactly as for the clone: tokens, mel, speaker
    assert seen.flow[0][:2] == seen.flow[1][:2] == (n, 2 * n)
    assert torch.equal(seen.flow[1][2], cross["embedding"])
    assert load_voice(folder / "cross.pt").cross_lingual and not load_voice(folder / "same.pt").cross_lingual


def test_voices_add_cross_lingual_needs_no_transcript(tmp_path: Path, tiny_models: tuple[Path, Path]) -> None:
    config = write_config(
        tmp_path / "c.toml", tmp_path / "data", synthesize={"model_dir": str(tiny_models[1])}
    )
    wav = prompt_wav(tmp_path / "zh.wav")
    refused = cli(config, "add", "zh", str(wav))
    assert (
        refused.returncode == 1
        and "transcript is empty" in refused.stderr
        and "--cross-lingual" in refused.stderr
    )
    add = cli(config, "add", "zh", str(wav), "--cross-lingual")
    assert add.returncode == 0, add.stderr
    assert torch.load(tmp_path / "data" / "voices" / "zh.pt", weights_only=True)["cross_lingual"] is True
    listing = cli(config)
    assert listing.stdout.splitlines()[0].startswith("zh\tcloned (cross-lingual)")


def test_no_speaker_no_stored_voice_and_no_prompt_is_refused_with_the_fix(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    from nodes.synthesize.cosyvoice.voices import VoiceBank, save_voice

    model = speakerless(tiny_models[1], tmp_path / "m")
    fe = PromptFrontend(model)
    bank = VoiceBank({}, tmp_path / "voices", fe.fingerprint, model)
    with pytest.raises(UnknownVoice) as err:
        bank.get("")
    assert "stream-tts models fetch" in str(err.value) and "stream-tts voices add" in str(err.value)
    assert str(model / DEFAULT_PROMPT) in str(err.value)
    save_voice(make_voice(fe, "me", prompt_wav(tmp_path / "me.wav"), "はい。"), tmp_path / "voices")
    assert bank.get("").name == "me"  # a stored voice, with no prompt to make "default" from


@pytest.mark.timeout(400)
def test_the_synthesize_node_makes_the_default_voice_once_from_the_fetched_prompt(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    from tests.test_synthesize_node import start

    model = speakerless(tiny_models[1], tmp_path / "model")
    (tmp_path / "run").mkdir()
    env, h = start(tmp_path / "run", model, first_hop_tokens=5, max_text_tokens=20)
    stored = env.data_dir / "voices" / f"{DEFAULT_VOICE_NAME}.pt"

    def restart() -> TapEvent:
        env.stop_all()
        h.events.clear()
        env.start("node", "synthesize")
        assert h.wait_state(("ready", "error")) == "ready", env.log("node-synthesize")[-3000:]
        return h.event("voice", timeout=30)

    try:
        # no speaker, no voice configured or stored, no prompt: the sentence fails and says the fix
        assert h.wait_state(("ready", "error")) == "error"
        h.clause("s", 0, 0, "テストです。", last=True)
        failed = h.ack()
        assert isinstance(failed, Failed) and "stream-tts models fetch" in failed.reason, failed
        # the prompt is fetched: the next start makes "default" from it and says so on the tap
        prompt = write_default_prompt(model)
        voice = restart()
        assert voice.detail == {
            "name": "default",
            "source": "stored",
            "cross_lingual": True,
            "configured": "",
        }
        record = torch.load(stored, weights_only=True)
        # made by the same code as `voices add --cross-lingual`, from that prompt
        again = make_voice(PromptFrontend(model), "default", prompt, DEFAULT_PROMPT_TEXT, cross_lingual=True)
        assert record["cross_lingual"] is True and record["origin"] == DEFAULT_ORIGIN
        assert torch.equal(record["embedding"], again["embedding"])
        assert torch.equal(record["prompt_speech_token"], again["prompt_speech_token"])
        h.clause("s", 1, 0, "テストを実行します。", last=True)
        audio = h.sentence_audio("s", 1)
        assert sum(len(c.pcm) for c in audio) > 0
        # once: a restart uses the stored voice, it does not make it again
        made = stored.stat().st_mtime_ns
        assert restart().detail["name"] == "default"
        assert stored.stat().st_mtime_ns == made
    finally:
        env.stop_all()
        h.close()
