"""CosyVoice v1 (the CosyVoice-300M-SFT layout) on its tiny random-weight folder: the folder is told
from CosyVoice2's by its yaml, loads strictly, speaks with each spk2info speaker by name at
22 050 Hz, streams its audio in upstream's v1 chunks, and says each clause as it comes.

Sizes are exact: a chunk of h new tokens runs the flow over h + 20 tokens, int((h + 20) x 22050 /
256 / 50) mel frames, of which the last 34 wait for the next chunk's cross-fade and the 20 before
them for the vocoder's; 256 samples a frame."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bus.errors import ModelLoadError
from nodes.synthesize.cosyvoice.engine import CosyVoiceEngine, EngineOptions
from nodes.synthesize.cosyvoice.factory import load_model, open_engine
from nodes.synthesize.cosyvoice.layout import V1, V2, layout_of
from nodes.synthesize.cosyvoice.v1.engine import CosyVoice1Engine
from nodes.synthesize.cosyvoice.v1.load import ENGINE_SECTIONS, load_cosyvoice1
from nodes.synthesize.cosyvoice.v1.tiny import SPEAKERS
from nodes.synthesize.cosyvoice.voices import PromptFrontend, make_voice, save_voice
from nodes.synthesize.engine import SpeechChunk, TextFeed
from nodes.synthesize.errors import NothingToSay, SynthesisCancelled, SynthesisTimeout, UnknownVoice
from tests.test_voices import prompt_wav

pytestmark = pytest.mark.timeout(180)
SPM = 256  # samples per mel frame at 22 050 Hz
HELD = 34 + 20  # mel frames a chunk holds back: the flow's overlap, then the vocoder's cache
LONG: dict[str, Any] = {
    "min_token_text_ratio": 8.0,
    "max_token_text_ratio": 9.0,
}  # many tokens per text token
SENTENCE = "キョウハ、イイテンキデスネ。"


def mels(tokens: int) -> int:
    return int(tokens * 22050 / 256 / 50)


@pytest.fixture(scope="module")
def engine(tiny_v1: Path) -> CosyVoice1Engine:
    torch.set_num_threads(2)
    e = open_engine(tiny_v1, EngineOptions(device="cpu"))
    assert isinstance(e, CosyVoice1Engine)
    return e


def run(engine: CosyVoice1Engine, pieces: Any, voice: str = "日语男", **opts: Any) -> list[SpeechChunk]:
    engine.options = EngineOptions(device="cpu", **opts)
    return list(engine.synthesize(pieces, voice))


def test_the_tiny_folder_has_the_released_layout_and_loads_strictly(tiny_v1: Path) -> None:
    for name in V1.required:
        assert (tiny_v1 / name).is_file(), name
    assert not (tiny_v1 / "cosyvoice2.yaml").exists()
    yaml = (tiny_v1 / "cosyvoice.yaml").read_text()
    for cls in (
        "cosyvoice.llm.llm.TransformerLM",
        "cosyvoice.transformer.encoder.ConformerEncoder",
        "cosyvoice.transformer.encoder.TransformerEncoder",
        "MaskedDiffWithXvec",
        "InterpolateRegulator",
        "ConditionalCFM",
        "ConditionalDecoder",
        "HiFTGenerator",
        "whisper.tokenizer.get_tokenizer",
        "text_token_size: 51866",
        "cosyvoice.dataset.processor",
    ):
        assert cls in yaml, cls
    m = load_cosyvoice1(tiny_v1, "cpu")
    assert (m.sample_rate, m.samples_per_mel, m.params["input_frame_rate"]) == (22050, SPM, 50)
    assert list(m.spk2info) == list(SPEAKERS) == ["中文女", "中文男", "日语男"]
    assert m.params["text_token_size"] == m.tokenizer.encoding.n_vocab == 51866  # whisper's, multilingual
    assert type(m.hift.m_source.l_sin_gen).__name__ == "SineGen"  # v1's source, not CosyVoice2's


def test_the_folder_tells_the_version_and_the_factory_opens_the_right_engine(
    tiny_v1: Path, tiny_models: tuple[Path, Path]
) -> None:
    assert layout_of(tiny_v1) is V1 and layout_of(tiny_models[1]) is V2
    assert layout_of(tiny_v1 / "nowhere") is V2  # a folder that is not there: its load says so
    assert load_model(tiny_v1, "cpu").sample_rate == 22050
    assert load_model(tiny_models[1], "cpu").sample_rate == 24000
    assert isinstance(open_engine(tiny_models[1], EngineOptions(max_token_text_ratio=4.0)), CosyVoiceEngine)
    assert set(ENGINE_SECTIONS) >= {"llm", "flow", "hift", "get_tokenizer"}


def test_weights_that_do_not_fit_are_refused(tmp_path: Path, tiny_v1: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_v1, broken)
    sd = torch.load(broken / "flow.pt", weights_only=True)
    sd.pop(next(iter(sd)))
    torch.save(sd, broken / "flow.pt")
    with pytest.raises(ModelLoadError, match=r"flow\.pt: weights do not fit cosyvoice\.yaml"):
        load_cosyvoice1(broken)
    (broken / "speech_tokenizer_v1.onnx").unlink()
    with pytest.raises(ModelLoadError, match=r"missing speech_tokenizer_v1\.onnx"):
        load_cosyvoice1(broken)


def test_each_speaker_is_a_voice_by_name_and_an_unknown_name_lists_them(engine: CosyVoice1Engine) -> None:
    assert engine.voices() == list(SPEAKERS)
    assert engine.describe_voice("日语男") == {"name": "日语男", "source": "model", "cross_lingual": False}
    assert engine.describe()["model"] == "CosyVoice v1" and engine.describe()["rate_hz"] == 22050
    with pytest.raises(UnknownVoice) as err:
        run(engine, [SENTENCE], voice="japanese_female")
    msg = str(err.value)
    assert "unknown voice 'japanese_female'" in msg and "中文女, 中文男, 日语男" in msg
    a = np.concatenate([c.pcm for c in run(engine, [SENTENCE], voice="日语男")])
    b = np.concatenate([c.pcm for c in run(engine, [SENTENCE], voice="中文女")])
    again = np.concatenate([c.pcm for c in run(engine, [SENTENCE], voice="日语男")])
    assert a.size > 0 and np.all(np.isfinite(a)) and engine.sample_rate_hz == 22050
    assert np.array_equal(a, again)  # a fixed seed: a re-sent sentence sounds the same
    assert a.shape != b.shape or not np.array_equal(a, b)  # each speaker's vector reaches the LM and flow


@pytest.mark.parametrize("first_hop", [21, 30])
def test_chunks_come_as_upstream_streams_v1_the_first_after_hop_plus_20_tokens(
    engine: CosyVoice1Engine, first_hop: int
) -> None:
    chunks = run(engine, [SENTENCE], v1_first_hop_tokens=first_hop, v1_hop_tokens=50, **LONG)
    sizes = [c.pcm.size for c in chunks]
    assert sizes[0] == (mels(first_hop + 20) - HELD) * SPM
    hops = [first_hop, min(2 * first_hop, 50), 50]
    assert sizes[1] == (mels(hops[1] + 20) - 34) * SPM  # later chunks also re-vocode the 20 held
    assert len(chunks) >= 3 and [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert {c.utterance for c in chunks} == {0}
    assert chunks[0].timings["lm_steps"] == first_hop + 20


def test_first_audio_is_out_before_the_next_clause_comes_and_later_clauses_follow(
    engine: CosyVoice1Engine,
) -> None:
    """v1 reads a whole text before it speaks: the first clause is said on its own, at once; a
    clause that comes later is the next utterance; the sentence's last chunk says last."""
    engine.options = EngineOptions(device="cpu", **LONG)
    feed = TextFeed()
    got: list[SpeechChunk] = []
    said_first = threading.Event()

    def consume() -> None:
        for c in engine.synthesize(feed, "日语男"):
            got.append(c)
            said_first.set()

    worker = threading.Thread(target=consume)
    feed.put("キョウハ、")
    worker.start()
    assert said_first.wait(60), "the first clause was not said before the second came"
    time.sleep(0.5)  # (whatever else it has of the first clause)
    assert got[0].pcm.size > 0 and not any(c.last for c in got)
    feed.put("イイテンキデスネ。")
    feed.close()
    worker.join(60)
    assert got[0].utterance == 0 and got[-1].utterance == 1 and got[-1].last
    assert sum(c.last for c in got) == 1


def test_clauses_already_there_are_said_together_up_to_the_token_limit(engine: CosyVoice1Engine) -> None:
    pieces = ["キョウハ、", "イイテンキデスネ。", "テストヲジッコウシマス。"]
    assert {c.utterance for c in run(engine, pieces)} == {0}
    split = run(engine, pieces, max_text_tokens=8)
    assert len({c.utterance for c in split}) >= 2 and split[-1].last


def test_text_that_ends_after_the_audio_closes_with_an_empty_last_chunk(engine: CosyVoice1Engine) -> None:
    engine.options = EngineOptions(device="cpu")
    feed = TextFeed()
    feed.put(SENTENCE)
    gen = engine.synthesize(feed, "日语男")
    audio = next(gen)  # the whole utterance is out, and not held until the text's end is known
    assert audio.pcm.size > 0 and not audio.last
    threading.Timer(0.3, feed.close).start()
    rest = list(gen)
    assert [(c.pcm.size, c.last) for c in rest] == [(0, True)]


def test_deadline_cancel_and_nothing_to_say(engine: CosyVoice1Engine) -> None:
    engine.options = EngineOptions(device="cpu", deadline_s=1.0)
    feed = TextFeed()
    feed.put(SENTENCE)
    t0 = time.monotonic()
    with pytest.raises(SynthesisTimeout):
        list(engine.synthesize(feed, "日语男"))  # the next clause never comes
    assert time.monotonic() - t0 < 1.0 + 5.0
    engine.options = EngineOptions(device="cpu")
    feed = TextFeed()
    feed.put(SENTENCE)
    gen = engine.synthesize(feed, "日语男")
    next(gen)
    threading.Timer(0.3, feed.cancel).start()
    with pytest.raises(SynthesisCancelled):
        list(gen)
    for pieces in ([], ["  "], ["……！？", "「」"]):
        with pytest.raises(NothingToSay):
            run(engine, pieces)


def test_speed_scales_the_audio(engine: CosyVoice1Engine) -> None:
    engine.options = EngineOptions(device="cpu", **LONG)
    length = {
        s: sum(c.pcm.size for c in engine.synthesize([SENTENCE], "日语男", speed=s)) for s in (1.0, 2.0)
    }
    assert abs(length[2.0] / length[1.0] - 0.5) < 0.1, length


def test_a_cloned_voice_speaks_and_a_cosyvoice2_voice_is_refused(
    tmp_path: Path, tiny_v1: Path, tiny_models: tuple[Path, Path]
) -> None:
    wav = prompt_wav(tmp_path / "me.wav")
    folder = tmp_path / "voices"
    record = make_voice(PromptFrontend(tiny_v1), "me", wav, "コンニチワ、テストデス。")
    assert record["sample_rate"] == 22050
    # v1's front end keeps the whole prompt mel (no 2-frames-a-token cut): 3 s at 22 050 / 256
    assert record["prompt_speech_feat"].shape[1] == 3 * 22050 // 256  # matcha pads (1024 - 256) / 2 a side
    save_voice(record, folder)
    save_voice(make_voice(PromptFrontend(tiny_models[1]), "v2", wav, "コンニチワ。"), folder)
    engine = CosyVoice1Engine(tiny_v1, EngineOptions(device="cpu", voices_dir=folder))
    assert engine.voices() == ["me", "v2", *SPEAKERS]
    cloned = np.concatenate([c.pcm for c in engine.synthesize([SENTENCE], "me")])
    plain = np.concatenate([c.pcm for c in engine.synthesize([SENTENCE], "日语男")])
    assert cloned.size > 0 and np.all(np.isfinite(cloned))
    assert cloned.shape != plain.shape or not np.array_equal(cloned, plain)
    with pytest.raises(Exception, match="another model's prompt front end"):
        list(engine.synthesize([SENTENCE], "v2"))


def test_instruct_is_refused_at_load(tiny_v1: Path) -> None:
    with pytest.raises(ModelLoadError, match="takes no instruct"):
        CosyVoice1Engine(tiny_v1, EngineOptions(device="cpu", instruct="明るく"))
    with pytest.raises(ValueError, match="at least 21"):
        EngineOptions(v1_first_hop_tokens=20)


def test_models_fetch_voice_cosyvoice_300m_sft_plans_the_released_layout(tmp_path: Path) -> None:
    """`stream-tts models fetch --voice CosyVoice-300M-SFT`: every file the v1 loader needs, from the
    pinned hub commit, each with its size and sha256 where public ones exist and the reason where
    not; with no hub to reach it names every URL and where it goes, and downloads nothing."""
    import socket

    from models import fetch as fetch_mod
    from models.manifest import load_manifest
    from tests.test_fetch import run_cli

    v = load_manifest().voice("CosyVoice-300M-SFT")
    assert (v.repo, len(v.revision)) == ("FunAudioLLM/CosyVoice-300M-SFT", 40)
    jobs = fetch_mod.jobs_for(load_manifest(), None, "CosyVoice-300M-SFT", tmp_path / "w")
    assert {j.file.name for j in jobs} == {*V1.required, "spk2info.pt"}
    assert all(j.dest.parent == tmp_path / "w" / "CosyVoice-300M-SFT" for j in jobs)
    for j in jobs:
        assert (j.file.size and j.file.verifiable) or j.file.no_sha256, j.file
    assert {j.file.name for j in jobs if not j.file.verifiable} == {"cosyvoice.yaml", "spk2info.pt"}
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    args = ["fetch", "--voice", "CosyVoice-300M-SFT", "--translator", "none", "--dest", str(tmp_path / "w")]
    r = run_cli(args, closed, tmp_path)
    assert r.returncode == 3, r.stderr
    for j in jobs:
        assert j.url(closed) in r.stderr and str(j.dest) in r.stderr
    assert f"/resolve/{v.revision}/llm.pt" in r.stderr and not (tmp_path / "w").exists()


def test_the_doctor_loads_a_v1_folder_and_names_its_speakers_when_the_voice_is_not_one(
    tmp_path: Path, tiny_v1: Path
) -> None:
    from tests.conftest import BusEnv
    from tests.test_doctor import rows_of, run

    env = BusEnv(tmp_path)
    for voice, status in (("日语男", "ok"), ("japanese_female", "error")):
        env.set_sections(synthesize={"model_dir": str(tiny_v1), "voice": voice})
        rows = rows_of(run(["doctor", "--json", "--quiet"], env.env()).stdout)
        model = rows["voice model"]
        assert model["status"] == "ok" and "CosyVoice v1" in model["detail"] and "22050 Hz" in model["detail"]
        assert rows["voice"]["status"] == status, rows["voice"]
        if status == "ok":
            assert rows["voice"]["detail"] == '[synthesize] voice = "日语男": 日语男: model speaker'
        else:
            assert "unknown voice 'japanese_female' (known: 中文女, 中文男, 日语男" in rows["voice"]["detail"]
    broken = tmp_path / "broken"
    shutil.copytree(tiny_v1, broken)
    (broken / "speech_tokenizer_v1.onnx").unlink()
    env.set_sections(synthesize={"model_dir": str(broken)})
    model = rows_of(run(["doctor", "--json", "--quiet"], env.env()).stdout)["voice model"]
    assert model["status"] == "error" and "lacks speech_tokenizer_v1.onnx" in model["detail"]
