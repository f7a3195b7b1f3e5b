"""Turn boundaries. A new agent turn cancels stale speech: the pipe (stream-json turn boundaries) and
the hook (a new Stop) send a Cancel for the session before the new text, and ingest passes it to
every stage. A turn's end flushes: the pipe (at `result` and at the end of input), the hook (after
its text) and `stream-tts flush` send a Flush, so ingest lets a sentence with no final punctuation
go at once (not after idle_flush_s) and playback starts what it holds."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import zmq

from bus.client import Publisher
from bus.messages import Cancel, Sentence, decode
from stream_tts.claude.stream_json import Say, StreamJsonReader
from tests.conftest import REPO, BusEnv, stream_tts
from tests.test_ingest_e2e import control_ids, control_sub, controls, ingest_sent_ns, nothing_more, sentences


def _turn(session: str, n: int, text: str) -> list[dict[str, object]]:
    return [
        {"type": "system", "subtype": "init", "session_id": session, "uuid": f"i{n}"},
        {
            "type": "assistant",
            "session_id": session,
            "uuid": f"a{n}",
            "parent_tool_use_id": None,
            "message": {
                "id": f"msg_{n}",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
            },
        },
        {"type": "result", "subtype": "success", "session_id": session, "uuid": f"r{n}", "result": text},
    ]


def test_reader_cancels_between_turns_not_before_the_first() -> None:
    reader = StreamJsonReader()
    says = []
    for obj in _turn("sess", 1, "First answer.") + _turn("sess", 2, "Second answer."):
        says += reader.line(json.dumps(obj).encode())
    cancels = [i for i, s in enumerate(says) if s.cancel]
    assert len(cancels) == 1
    texts_before = "".join(s.text for s in says[: cancels[0]])
    texts_after = "".join(s.text for s in says[cancels[0] :])
    assert "First answer." in texts_before and "Second answer." in texts_after
    assert says[cancels[0]].stream == "sess"


def test_pipe_cancels_the_old_turn_at_every_stage_before_the_new_text(bus_env: BusEnv) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    translate_in = bus_env.config.endpoints.bind_socket(ctx, "translate")
    bus_env.start("node", "ingest")
    control = bus_env.config.endpoints.connect_socket(ctx, "control")  # as every stage does
    time.sleep(1.0)  # let the control subscription reach ingest's PUB
    lines = "".join(
        json.dumps(o) + "\n" for o in _turn("sess", 1, "Old news.") + _turn("sess", 2, "New news.")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", "pipe"],
        input=lines,
        env=bus_env.env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    sentences: list[Sentence] = []
    while len(sentences) < 2 and translate_in.poll(10_000):
        msg = decode(translate_in.recv_multipart())
        assert isinstance(msg, Sentence)
        sentences.append(msg)
    assert [s.text for s in sentences] == ["Old news.", "New news."]
    sent = controls(control, quiet_s=2.0)
    assert control_ids(sent) == [
        ("flush", "sess"),  # the first turn's result
        ("cancel", "sess"),  # the second turn's init
        ("flush", "sess"),  # the second turn's result
    ]
    cancel = sent[1]
    assert isinstance(cancel, Cancel)
    ingest_at = {s.stage: s.sent_wall_ns for s in cancel.stamps}["ingest"]
    old_at, new_at = ({s.stage: s.sent_wall_ns for s in m.stamps}["ingest"] for m in sentences)
    # Stages drop what ingest sent before the cancel, so the old turn goes and the new one stays.
    assert old_at < ingest_at < new_at
    for sock in (translate_in, control):
        sock.close(0)


def _deltas(session: str, text: str) -> list[dict[str, object]]:
    """A streamed text block (--include-partial-messages) that is never closed."""

    def event(n: int, ev: dict[str, object]) -> dict[str, object]:
        return {
            "type": "stream_event",
            "event": ev,
            "session_id": session,
            "parent_tool_use_id": None,
            "uuid": f"e{n}",
        }

    block = {"type": "text", "text": ""}
    return [
        {"type": "system", "subtype": "init", "session_id": session, "uuid": "i1"},
        event(1, {"type": "message_start", "message": {"id": "msg_1", "content": []}}),
        event(2, {"type": "content_block_start", "index": 0, "content_block": block}),
        event(3, {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
    ]


def test_reader_flushes_each_stream_that_spoke_at_result_and_at_the_end() -> None:
    reader = StreamJsonReader(subagents=True)
    says: list[Say] = []
    for obj in _turn("a", 1, "One.") + _turn("b", 2, "Two.")[:2]:
        says += reader.line(json.dumps(obj).encode())
    says += reader.finish()
    flushes = [(i, s.stream) for i, s in enumerate(says) if s.flush]
    texts = {s.stream: i for i, s in enumerate(says) if s.text}
    assert [f for _, f in flushes] == ["a", "b"]  # a at its result, b (no result) at the end
    assert all(i > texts[stream] for i, stream in flushes)
    assert all(s.text == "" and not s.cancel for s in says if s.flush)


@pytest.mark.parametrize("end", ["result", "eof"])
def test_a_turn_without_final_punctuation_leaves_ingest_at_its_end_and_is_flushed(
    bus_env: BusEnv, end: str
) -> None:
    bus_env.set_sections(ingest={"idle_flush_s": 60.0})  # the idle flush would take a minute
    translate_in = bus_env.config.endpoints.bind_socket(zmq.Context.instance(), "translate")
    bus_env.start("node", "ingest")
    control = control_sub(bus_env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_tts.cli", "pipe"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=bus_env.env(),
        cwd=REPO,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"".join(json.dumps(o).encode() + b"\n" for o in _deltas("sess", "All tests pass now")))
    proc.stdin.flush()
    assert nothing_more(translate_in, 1.5)  # no end yet: the sentence may still grow
    t0 = time.monotonic()
    if end == "result":
        proc.stdin.write(
            json.dumps({"type": "result", "subtype": "success", "session_id": "sess"}).encode() + b"\n"
        )
        proc.stdin.flush()
    else:
        proc.stdin.close()
    got = sentences(translate_in, 1, timeout_s=10)
    assert [(s.stream, s.text) for s in got] == [("sess", "All tests pass now")]
    assert time.monotonic() - t0 < 10
    sent = controls(control)
    assert control_ids(sent) == [("flush", "sess")]
    assert ingest_sent_ns(sent[-1]) > ingest_sent_ns(got[0])
    if end == "result":
        proc.stdin.close()
    assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    assert nothing_more(control, 0.5)  # the end of input has nothing left to flush
    for sock in (translate_in, control):
        sock.close(0)


def test_flush_command_lets_a_held_sentence_go_now(bus_env: BusEnv) -> None:
    bus_env.set_sections(ingest={"idle_flush_s": 60.0})
    translate_in = bus_env.config.endpoints.bind_socket(zmq.Context.instance(), "translate")
    bus_env.start("node", "ingest")
    control = control_sub(bus_env)
    with Publisher(bus_env.config) as pub:
        pub.send("s1", "Half a thought", final=False)
        pub.send("s2", "Another half", final=False)
    assert nothing_more(translate_in, 1.0)
    cfg = str(bus_env.config_path)
    assert stream_tts("flush", "--stream", "s1", "--config", cfg).returncode == 0
    assert [(s.stream, s.text) for s in sentences(translate_in, 1)] == [("s1", "Half a thought")]
    assert nothing_more(translate_in, 0.5)
    assert control_ids(controls(control)) == [("flush", "s1")]
    assert stream_tts("flush", "--config", cfg).returncode == 0  # every stream
    assert [(s.stream, s.text) for s in sentences(translate_in, 1)] == [("s2", "Another half")]
    for sock in (translate_in, control):
        sock.close(0)


def test_flush_command_with_no_ingest_says_so_and_exits_1(bus_env: BusEnv) -> None:
    proc = stream_tts("flush", "--config", str(bus_env.config_path), timeout=30)
    assert proc.returncode == 1 and "no ingest is listening" in proc.stderr


def test_ingest_lets_a_sentence_with_no_end_go_once_it_stopped_growing(bus_env: BusEnv) -> None:
    """The real node's tick -> SentenceStream.poll, with the configured idle time."""
    bus_env.set_sections(ingest={"idle_flush_s": 0.6})
    translate_in = bus_env.config.endpoints.bind_socket(zmq.Context.instance(), "translate")
    bus_env.start("node", "ingest")
    with Publisher(bus_env.config, wait_s=15) as pub:
        pub.send("s", "Waiting for", final=False)
        time.sleep(0.4)  # less than idle_flush_s: the sentence is still growing
        pub.send("s", " the build", final=False)
        t0 = time.monotonic()
    got = sentences(translate_in, 1, timeout_s=10)
    took = time.monotonic() - t0
    assert [(s.stream, s.text) for s in got] == [("s", "Waiting for the build")]
    assert 0.5 <= took < 5.0, took
    translate_in.close(0)
