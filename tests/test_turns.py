"""A new agent turn cancels stale speech: the pipe (stream-json turn boundaries) and the hook (a new
Stop) send a Cancel for the session before the new text, and ingest passes it to every stage."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import zmq

from bus.messages import Cancel, Sentence, decode
from nodes.claude_stream import StreamJsonReader
from tests.conftest import REPO, BusEnv


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
        [sys.executable, "-m", "bus.cli", "pipe"],
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
    assert control.poll(5000)
    cancel = decode(control.recv_multipart())
    assert isinstance(cancel, Cancel) and cancel.stream == "sess"
    ingest_at = {s.stage: s.sent_wall_ns for s in cancel.stamps}["ingest"]
    old_at, new_at = ({s.stage: s.sent_wall_ns for s in m.stamps}["ingest"] for m in sentences)
    # Stages drop what ingest sent before the cancel, so the old turn goes and the new one stays.
    assert old_at < ingest_at < new_at
    for sock in (translate_in, control):
        sock.close(0)
