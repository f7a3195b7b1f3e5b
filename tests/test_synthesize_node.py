"""The synthesize node as a real process (`python -m stream_tts.cli node synthesize`) on the tiny model:
Clause frames pushed into its PULL, AudioChunk frames pulled from a PULL bound at playback's
endpoint, acks from a PULL at the acks endpoint, tap events from a SUB bound at tap_in."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from bus.messages import AudioChunk, Cancel, Clause, Failed, Message, TapEvent, decode, encode
from nodes.synthesize.cosyvoice.load import QWEN_DIR
from tests.conftest import BusEnv

pytestmark = pytest.mark.timeout(180)
READY_S = 90.0


class Harness:
    """The test's side of the node's sockets."""

    def __init__(self, env: BusEnv) -> None:
        self.env = env
        ep = env.config.endpoints
        self.ctx = zmq.Context()
        self.tap = self.ctx.socket(zmq.SUB)
        self.tap.setsockopt(zmq.SUBSCRIBE, b"")
        self.tap.bind(ep.bind["tap_in"])
        self.audio = ep.bind_socket(self.ctx, "playback")
        self.acks = ep.bind_socket(self.ctx, "acks")
        self.control = ep.bind_socket(self.ctx, "control")
        self.push = ep.connect_socket(self.ctx, "synthesize")
        self.events: list[TapEvent] = []

    def close(self) -> None:
        for s in (self.tap, self.audio, self.acks, self.control, self.push):
            s.close(0)
        self.ctx.term()

    def poll_events(self) -> None:
        while self.tap.poll(0):
            ev = decode(self.tap.recv_multipart())
            assert isinstance(ev, TapEvent)
            self.events.append(ev)

    def wait_state(self, states: tuple[str, ...], timeout: float = READY_S) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.tap.poll(100):
                ev = decode(self.tap.recv_multipart())
                assert isinstance(ev, TapEvent)
                self.events.append(ev)
                if ev.kind == "heartbeat" and ev.detail.get("state") in states:
                    return str(ev.detail["state"])
        raise AssertionError(f"node never reached {states}; log:\n{self.env.log('node-synthesize')[-3000:]}")

    def send(self, msg: Message) -> None:
        self.push.send_multipart(encode(msg))

    def clause(self, stream: str, seq: int, index: int, text: str, last: bool, **kw: Any) -> None:
        self.send(Clause(stream=stream, seq=seq, index=index, text=text, last=last, text_en="en", **kw))

    def sentence_audio(self, stream: str, seq: int, timeout: float = 60) -> list[AudioChunk]:
        got: list[AudioChunk] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.audio.poll(100):
                msg = decode(self.audio.recv_multipart())
                assert isinstance(msg, AudioChunk)
                if (msg.stream, msg.seq) == (stream, seq):
                    got.append(msg)
                    if msg.last:
                        return got
        raise AssertionError(f"no last chunk for {stream}/{seq}; got {len(got)}")

    def audio_until_last(self, stream: str, seq: int, timeout: float = 60) -> list[AudioChunk]:
        """Every chunk that arrives (any sentence) until (stream, seq) has its last one."""
        got: list[AudioChunk] = []
        deadline = time.monotonic() + timeout
        while not any((c.stream, c.seq, c.last) == (stream, seq, True) for c in got):
            assert time.monotonic() < deadline, f"no last chunk for {stream}/{seq}; got {len(got)}"
            if self.audio.poll(100):
                msg = decode(self.audio.recv_multipart())
                assert isinstance(msg, AudioChunk)
                got.append(msg)
        return got

    def ack(self, timeout: float = 30) -> Message:
        assert self.acks.poll(int(timeout * 1000)), "no ack"
        return decode(self.acks.recv_multipart())

    def failed(self, timeout: float = 30) -> Failed:
        ack = self.ack(timeout)
        assert isinstance(ack, Failed), ack
        return ack

    def event(self, kind: str, stream: str = "", timeout: float = 10) -> TapEvent:
        deadline = time.monotonic() + timeout
        while True:
            self.poll_events()
            for ev in self.events:
                if ev.kind == kind and (not stream or ev.stream == stream):
                    return ev
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind} event; saw {[e.kind for e in self.events][-20:]}")
            time.sleep(0.05)


def start(root: Path, cosy: Path, **settings: Any) -> tuple[BusEnv, Harness]:
    env = BusEnv(root)
    env.set_sections(synthesize={"model_dir": str(cosy), "frontend": "none", "threads": 1, **settings})
    harness = Harness(env)
    env.start("node", "synthesize")
    return env, harness


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, tiny_models: tuple[Path, Path]) -> Iterator[Harness]:
    env, h = start(tmp_path_factory.mktemp("synth-node"), tiny_models[1], first_hop_tokens=5)
    try:
        assert h.wait_state(("ready", "error")) == "ready", env.log("node-synthesize")[-3000:]
        yield h
    finally:
        env.stop_all()
        h.close()


def test_clauses_of_a_sentence_come_out_as_ordered_chunks_of_one_utterance(node: Harness) -> None:
    node.clause("s1", 0, 0, "テストを実行します、", last=False)
    node.clause("s1", 0, 1, "ファイルを保存しました。", last=True)
    chunks = node.sentence_audio("s1", 0)
    assert [c.index for c in chunks] == list(range(len(chunks))) and len(chunks) >= 2
    assert [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    audio = np.concatenate([np.frombuffer(c.pcm, dtype="<f4") for c in chunks])
    assert all(c.rate_hz == 24000 and c.sample_format == "f32le" and c.samples > 0 for c in chunks)
    assert np.all(np.isfinite(audio)) and float(np.sqrt(np.mean(audio**2))) > 1e-3
    assert chunks[0].text_ja.startswith("テストを実行します、")
    assert chunks[-1].text_ja == "テストを実行します、ファイルを保存しました。"
    assert chunks[0].stamps[-1].stage == "synthesize"
    done = node.event("finished", "s1")
    assert done.detail["chunks"] == len(chunks) and done.detail["samples"] == audio.size
    assert done.detail["first_chunk_ms"] > 0 and done.detail["rtf"] > 0
    # each chunk left as soon as it was made: the worker woke the loop (it polls only every 50 ms)
    assert done.detail["send_delay_ms"] < 20, done.detail


def test_first_chunk_leaves_before_the_last_clause_arrives(node: Harness) -> None:
    node.clause("s2", 0, 0, "テストを実行します、", last=False)
    assert node.audio.poll(30_000), "no audio from the first clause alone"
    first = decode(node.audio.recv_multipart())
    assert isinstance(first, AudioChunk) and first.index == 0 and not first.last
    node.clause("s2", 0, 1, "終わり。", last=True)
    rest = node.sentence_audio("s2", 0)
    assert rest[0].index == 1 and rest[-1].last


def test_the_tap_hears_started_then_text_wait_then_first_chunk(node: Harness) -> None:
    """What translate's yield_to_synthesize waits on: `text_wait` when the LM runs out of text
    before its first chunk (あ、 is shorter than its first text group), and only then."""
    node.clause("s9", 0, 0, "あ、", last=False)
    wait = node.event("text_wait", "s9")
    started = node.event("started", "s9")
    assert started.mono_ns <= wait.mono_ns
    assert started.detail == {"host": socket.gethostname(), "device": "cpu"}  # translate: no GPU shared
    assert not node.audio.poll(300), "a first chunk without the text it needs"
    node.clause("s9", 0, 1, "テストを実行しました。", last=True)
    chunks = node.sentence_audio("s9", 0)
    first = node.event("first_chunk", "s9")
    assert first.mono_ns >= wait.mono_ns and first.detail["first_chunk_ms"] > 0 and chunks[0].index == 0
    assert [e.kind for e in node.events if e.stream == "s9" and e.kind == "text_wait"] == ["text_wait"]
    node.clause("s10", 0, 0, "テストを実行します、", last=False)  # enough for the first chunk
    first = node.event("first_chunk", "s10")
    assert node.event("started", "s10").mono_ns <= first.mono_ns
    assert not [e for e in node.events if e.stream == "s10" and e.kind == "text_wait"]
    node.clause("s10", 0, 1, "終わり。", last=True)
    assert node.sentence_audio("s10", 0)[-1].last


def test_nothing_speakable_gives_one_empty_last_chunk(node: Harness) -> None:
    node.clause("s3", 0, 0, "……", last=True)
    chunks = node.sentence_audio("s3", 0)
    assert len(chunks) == 1 and chunks[0].last and chunks[0].pcm == b""
    assert "nothing speakable" in node.event("skipped", "s3").detail["reason"]


def test_duplicate_clauses_and_bad_frames_are_dropped_node_goes_on(node: Harness) -> None:
    node.push.send_multipart([b"\xc1 not msgpack"])
    node.clause("s4", 0, 0, "はい。", last=True)
    node.clause("s4", 0, 0, "はい。", last=True)  # the same clause again
    chunks = node.sentence_audio("s4", 0)
    assert chunks[-1].last
    assert (
        node.event("stale", "s4").detail["reason"] == "duplicate"
    )  # the runtime drops it (bus/freshness.py)
    node.clause("s4", 0, 0, "はい。", last=True)  # after the sentence finished: dropped too
    node.clause("s4", 1, 0, "次です。", last=True)
    assert node.sentence_audio("s4", 1)[-1].last
    assert node.event("dropped").detail["reason"]


def test_cancel_stops_a_sentence_and_the_next_one_is_spoken(node: Harness) -> None:
    node.clause("s5", 0, 0, "テストを実行します、", last=False)  # never closed
    assert node.audio.poll(30_000)
    node.control.send_multipart(encode(Cancel(stream="s5", reason="test")))
    node.event("cancelled", "s5", timeout=15)
    node.clause("s6", 0, 0, "次です。", last=True)
    assert node.sentence_audio("s6", 0)[-1].last


def test_unknown_voice_fails_each_sentence_and_the_node_stays_up(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    env, h = start(tmp_path, tiny_models[1], voice="nobody")
    try:
        assert h.wait_state(("ready", "error")) == "error"
        setup_error = h.event("error")
        assert "unknown voice 'nobody'" in setup_error.detail["error"]
        for seq in (0, 1):
            h.clause("v", seq, 0, "こんにちは。", last=True)
            ack = h.ack()
            assert isinstance(ack, Failed) and ack.stage == "synthesize" and ack.seq == seq
            assert "unknown voice 'nobody'" in ack.reason
        assert env.procs[0].poll() is None
    finally:
        env.stop_all()
        h.close()


def test_missing_model_fails_every_sentence_with_the_reason(tmp_path: Path) -> None:
    env, h = start(tmp_path, tmp_path / "no-such-model")
    try:
        assert h.wait_state(("ready", "error")) == "error"
        h.clause("m", 0, 0, "こんにちは。", last=False)
        h.clause("m", 0, 1, "世界。", last=True)
        ack = h.ack()
        assert isinstance(ack, Failed) and "not found" in ack.reason
        assert not h.acks.poll(500)  # one Failed per sentence, not per clause
        assert env.procs[0].poll() is None
    finally:
        env.stop_all()
        h.close()


def test_text_that_is_not_japanese_is_spoken_with_a_warning(node: Harness) -> None:
    node.clause("w", 0, 0, "The build passed.", last=True)
    assert node.sentence_audio("w", 0)[-1].last  # spoken as it is
    warning = node.event("warning", "w")
    assert warning.detail["reason"] == "text is not Japanese (script latin): spoken as it is"
    assert warning.detail["text"] == "The build passed." and warning.seq == 0
    node.clause("w", 1, 0, "ビルドが通りました。", last=True)
    assert node.sentence_audio("w", 1)[-1].last
    node.event("finished", "w")
    node.poll_events()
    assert [(e.stream, e.seq) for e in node.events if e.kind == "warning"] == [("w", 0)]


def test_the_device_and_how_it_was_chosen_are_on_the_tap_at_start(node: Harness) -> None:
    engine = node.event("engine")
    assert engine.detail["device"] == "cpu"  # this machine: no CUDA, no MPS
    assert engine.detail["device_choice"] == {
        "device": "cpu",
        "why": "only candidate",
        "ms_per_step": {},
        "errors": {},
    }


def test_a_sentence_past_its_deadline_fails_with_an_event_and_the_next_is_spoken(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    env, h = start(tmp_path, tiny_models[1], deadline_s=3.0, first_hop_tokens=5)
    try:
        assert h.wait_state(("ready", "error")) == "ready", env.log("node-synthesize")[-3000:]
        h.clause("d", 0, 0, "とても長い文章です。" * 10, last=True)  # ~7 s of work on a free 2-core CPU
        h.clause("d", 1, 0, "こんにちは、", last=False)  # its next clause never comes
        h.clause("d", 2, 0, "はい。", last=True)  # ~0.2 s
        slow, waiting = h.failed(), h.failed()
        assert [(a.seq, a.stage) for a in (slow, waiting)] == [(0, "synthesize"), (1, "synthesize")]
        assert slow.reason == "deadline of 3 s passed"
        assert waiting.reason.startswith("no further text within the deadline")
        chunks = h.audio_until_last("d", 2)
        first = [c for c in chunks if c.seq == 0]
        assert first and not any(c.last for c in first)  # it was speaking when the deadline passed
        h.event("finished", "d")
        errors = {e.seq: e.detail for e in h.events if e.kind == "error"}
        assert errors[0]["error"] == slow.reason and errors[1]["error"] == waiting.reason
        assert errors[0]["error_type"] == errors[1]["error_type"] == "SynthesisTimeout"
        assert not errors[0]["fatal"]
        assert [e.seq for e in h.events if e.kind == "finished"] == [2]
        assert env.procs[0].poll() is None
    finally:
        env.stop_all()
        h.close()


def with_a_bigger_tokenizer(model: Path, out: Path, word: str) -> Path:
    """`model` (symlinked) with a CosyVoice-BlankEN tokenizer that knows more tokens than the
    LM's text embedding has rows, as a tokenizer taken from another model would: `word` becomes
    a token id past the LM's vocabulary, and the real LM raises when that text reaches it."""
    from transformers import AutoTokenizer

    out.mkdir()
    for p in model.iterdir():
        if p.name != QWEN_DIR:
            (out / p.name).symlink_to(p)
    src, dst = model / QWEN_DIR, out / QWEN_DIR
    rows = json.loads((src / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    tok = AutoTokenizer.from_pretrained(src)
    tok.add_tokens([f"<unused_{i}>" for i in range(rows - len(tok) + 8)] + [word])
    tok.save_pretrained(dst)
    for p in src.iterdir():  # the LM's own config and weights, unchanged
        if not (dst / p.name).exists():
            (dst / p.name).symlink_to(p)
    assert tok.convert_tokens_to_ids(word) >= rows
    return out


def test_a_model_failure_mid_sentence_fails_it_with_an_event_and_the_node_goes_on(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    broken = with_a_bigger_tokenizer(tiny_models[1], tmp_path / "bigger-tokenizer", "壊れ")
    (tmp_path / "bus").mkdir()
    env, h = start(tmp_path / "bus", broken, first_hop_tokens=5)
    try:
        assert h.wait_state(("ready", "error")) == "ready", env.log("node-synthesize")[-3000:]
        # the LM speaks after its first 5 text tokens; 壊れ is in the third group of 5
        h.clause("b", 0, 0, "テストを実行します、", last=False)
        h.clause("b", 0, 1, "ファイルを保存しました、壊れました。", last=True)
        h.clause("b", 1, 0, "はい。", last=True)
        ack = h.failed()
        assert (ack.seq, ack.stage) == (0, "synthesize")
        assert ack.reason == "the model failed mid-utterance (IndexError: index out of range in self)"
        chunks = h.audio_until_last("b", 1)
        spoken = [c for c in chunks if c.seq == 0]
        assert spoken and not any(c.last for c in spoken)  # audio had gone out: it failed mid-loop
        h.event("finished", "b")
        error = h.event("error", "b").detail
        assert (error["error"], error["error_type"], error["fatal"]) == (ack.reason, "SynthesisError", False)
        assert [e.seq for e in h.events if e.kind == "finished"] == [1]
        assert h.wait_state(("ready",), timeout=10) == "ready"  # healthy: one sentence failed, not the node
        assert env.procs[0].poll() is None
    finally:
        env.stop_all()
        h.close()


def test_a_clause_over_the_clause_limit_is_dropped_and_does_not_hold_the_stream(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    """A 20,000-character clause (60 KB: a valid header) was synthesized until the 60 s deadline,
    every later sentence waiting behind it. Now decode refuses it (MAX_CLAUSE_CHARS): a `dropped`
    event naming the field, and the next sentence is spoken at once."""
    env, h = start(tmp_path, tiny_models[1], first_hop_tokens=5)  # deadline_s: the default 60 s
    try:
        assert h.wait_state(("ready", "error")) == "ready", env.log("node-synthesize")[-3000:]
        h.clause("long", 0, 0, "あ" * 20_000, last=True)
        t0 = time.monotonic()
        h.clause("long", 1, 0, "はい。", last=True)
        chunks = h.audio_until_last("long", 1, timeout=30)
        assert time.monotonic() - t0 < 30
        assert not [c for c in chunks if c.seq == 0]
        reason = h.event("dropped").detail["reason"]
        assert "clause: field 'text' has 20000 characters, more than 500" in reason
        assert env.procs[0].poll() is None
    finally:
        env.stop_all()
        h.close()


def test_a_clause_too_short_to_say_alone_goes_with_the_next(node: Harness) -> None:
    """min_mora (8): 「はい、」 (2 mora) is not handed to the voice alone; it is said with the clause
    after it, and the sentence's `finished` counts it. A whole sentence shorter than that is still
    spoken (with its last clause)."""
    node.clause("m1", 0, 0, "はい、", last=False)
    assert not node.audio.poll(1500), "a 2-mora clause was spoken alone"
    node.clause("m1", 0, 1, "テストを実行しました。", last=True)
    chunks = node.sentence_audio("m1", 0)
    assert chunks[-1].last and node.event("finished", "m1").detail["short_clauses_joined"] == 1
    node.clause("m2", 0, 0, "はい。", last=True)  # the whole sentence: spoken as it is
    assert node.sentence_audio("m2", 0)[-1].last
    assert node.event("finished", "m2").detail["short_clauses_joined"] == 0


def test_mora_are_counted_in_kana_small_kana_joining_the_one_before() -> None:
    from nodes.synthesize.mora import mora_count

    assert mora_count("ハイ、") == 2
    assert mora_count("キョウ") == 2 and mora_count("ジッコウ") == 4 and mora_count("コーヒー") == 4
    assert mora_count("テストヲジッコウシマシタ。") == 12
    assert mora_count("実行") == 4 and mora_count("OK") == 1 and mora_count("、。！") == 0
