"""Issue #23, no input crashes a node: bad input at the bus's edges, through real processes and
sockets. Each test reproduces one input that crashed or blocked something before the fix."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

from bus.client import Publisher
from bus.messages import Played, Sentence, TapEvent, decode, encode
from bus.tap import subscribe
from nodes.playback.wav_sink import WavSink
from tests.conftest import REPO, BusEnv, wait_for
from tests.test_runtime import pull, recv


def sentences(sock: zmq.Socket, n: int) -> list[Sentence]:
    """The first n sentences (distinct (stream, seq): nobody acks here, so ingest may re-send)."""
    got: dict[tuple[str, int], Sentence] = {}
    while len(got) < n:
        msg = recv(sock)
        assert isinstance(msg, Sentence)
        got.setdefault((msg.stream, msg.seq), msg)
    return list(got.values())


def start_ingest(env: BusEnv) -> subprocess.Popen[bytes]:
    """Ingest, with the tap proxy (producers hear on the tap that ingest took their text)."""
    env.start("tap-proxy")
    return env.start("node", "ingest")


def _tap_events(sock: zmq.Socket, kind: str, node: str, timeout_s: float) -> list[TapEvent]:
    deadline = time.monotonic() + timeout_s
    got: list[TapEvent] = []
    while time.monotonic() < deadline and not got:
        if sock.poll(100):
            ev = decode(sock.recv_multipart())
            if isinstance(ev, TapEvent) and (ev.kind, ev.node) == (kind, node):
                got.append(ev)
    return got


def test_a_played_ack_with_a_seq_past_64_bits_is_dropped_and_ingest_goes_on(bus_env: BusEnv) -> None:
    """seq = 2**64 - 1 is a valid msgpack uint; it reached the journal, where SQLite raised
    OverflowError and ingest died. Now decode refuses it: a `dropped` event, and ingest goes on."""
    translate_in = pull(bus_env, "translate")
    tap = subscribe(bus_env.config)
    proc = start_ingest(bus_env)
    assert _tap_events(tap, "heartbeat", "ingest", 20)  # the tap's subscription is live
    with Publisher(bus_env.config, wait_s=10) as pub:
        pub.send("s", "Before the bad ack.")
    assert sentences(translate_in, 1)[0].text == "Before the bad ack."
    acks = bus_env.config.endpoints.connect_socket(zmq.Context.instance(), "acks")
    good = Played(stream="s", seq=0, samples=1, rate_hz=24000, first_sample_wall_ns=1, last_sample_wall_ns=2)
    header = msgpack.unpackb(encode(good)[0])
    header["seq"] = 2**64 - 1
    acks.send_multipart([msgpack.packb(header)])
    dropped = _tap_events(tap, "dropped", "ingest", 10)
    assert dropped and "field 'seq'" in dropped[0].detail["reason"], bus_env.log("node-ingest")[-2000:]
    time.sleep(0.5)
    assert proc.poll() is None, bus_env.log("node-ingest")[-3000:]
    with Publisher(bus_env.config, wait_s=10) as pub:
        pub.send("s", "After the bad ack.")
    after = recv(translate_in)
    while isinstance(after, Sentence) and after.seq == 0:  # a re-send of the one never acked
        after = recv(translate_in)
    assert isinstance(after, Sentence) and (after.seq, after.text) == (1, "After the bad ack.")
    acks.close(0)
    tap.close(0)
    translate_in.close(0)


def _strict_json(line: str) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_the_tap_prints_strict_json_when_a_detail_holds_nan_and_infinity(bus_env: BusEnv) -> None:
    """NaN audio stats in an event's detail came out as the bare token NaN, which no JSON parser
    but Python's reads: `stream-tts tap | jq` broke on it. Now NaN and +-inf are null."""
    bus_env.start("tap-proxy")
    out = bus_env.root / "tap.jsonl"
    tap = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream_tts.cli",
            "tap",
            "--node",
            "synthesize",
            "--output",
            str(out),
            "--seconds",
            "8",
        ],
        env=bus_env.env(),
        cwd=REPO,
        stderr=subprocess.PIPE,
    )
    pub = bus_env.config.endpoints.connect_socket(zmq.Context.instance(), "tap_in")
    stats = {"peak": float("nan"), "rms": float("inf"), "gain": -float("inf"), "ok": 0.5}
    ev = TapEvent(
        node="synthesize", kind="finished", stream="s", seq=3, detail={"audio": stats, "list": [float("nan")]}
    )
    # a PUB sends into nothing until the tap's subscription arrives: send until a line is written
    assert wait_for(
        lambda: pub.send_multipart(encode(ev)) is None and out.exists() and out.stat().st_size > 0, 6
    )
    assert tap.wait(timeout=15) == 0, tap.stderr.read() if tap.stderr else ""
    lines = out.read_text().splitlines()
    assert lines and "NaN" not in out.read_text() and "Infinity" not in out.read_text()
    got = _strict_json(lines[0])
    assert got["detail"] == {"audio": {"peak": None, "rms": None, "gain": None, "ok": 0.5}, "list": [None]}
    assert (got["stream"], got["seq"]) == ("s", 3)
    pub.close(0)


def test_to_json_is_strict_json_for_any_detail() -> None:
    ev = TapEvent(
        node="n", kind="error", detail={"x": [float("nan"), b"\xff", {1: -float("inf")}], "y": (1, 2)}
    )
    text = json.dumps(ev.to_json(), allow_nan=False)
    assert _strict_json(text)["detail"] == {"x": [None, "\ufffd", {"1": None}], "y": [1, 2]}
    assert math.isnan(ev.detail["x"][0])  # the event itself is left as it was


def test_pipe_skips_an_over_deep_stream_json_line_and_speaks_what_follows(bus_env: BusEnv) -> None:
    """A line of 5000 nested brackets: RecursionError killed `stream-tts pipe`, and nothing after
    it was spoken. Now it is a bad line (too_deep), reported and counted, and the pipe goes on."""
    from tests.test_claude_stream import deep_input

    translate_in = pull(bus_env, "translate")
    start_ingest(bus_env)
    proc = subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", "pipe", "--stats"],
        input=deep_input(),
        env=bus_env.env(),
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
    got = [m.text for m in sentences(translate_in, 2)]
    assert got == ["Before the deep lines.", "After them."]
    assert "W pipe: skipped line 2: too_deep: JSON nested deeper than 64 levels" in err
    assert "2 bad lines skipped (too_deep 2)" in err
    stats = json.loads(err.strip().splitlines()[-1])
    assert stats["too_deep"] == 2 and stats["published"] >= 2
    translate_in.close(0)


def test_say_repairs_text_that_is_not_valid_unicode_and_says_it(bus_env: BusEnv) -> None:
    """Bytes that are not UTF-8, in argv (Python hands them over as lone surrogates) or on stdin,
    ended `stream-tts say` with a traceback. Now each becomes U+FFFD, with a warning; exit 0."""
    translate_in = pull(bus_env, "translate")
    start_ingest(bus_env)
    argv = [
        sys.executable.encode(),
        b"-m",
        b"stream_tts.cli",
        b"say",
        b"--stream",
        b"bad",
        b"Caf\xe9 is open.",
    ]
    by_argv = subprocess.run(argv, env=bus_env.env(), cwd=REPO, capture_output=True, timeout=30)
    by_stdin = subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", "say", "--stream", "bad", "-"],
        input=b"Stdin \xff\xfe is bad too.",
        env={**bus_env.env(), "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": ""},
        cwd=REPO,
        capture_output=True,
        timeout=30,
    )
    for proc in (by_argv, by_stdin):
        err = proc.stderr.decode()
        assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
        assert "W say: text that is not valid UTF-8 was repaired (U+FFFD)" in err
    got = sentences(translate_in, 2)
    assert [(m.stream, m.text) for m in got] == [
        ("bad", "Caf\ufffd is open."),
        ("bad", "Stdin \ufffd\ufffd is bad too."),
    ]
    translate_in.close(0)


def test_the_publisher_repairs_lone_surrogates_at_encode(bus_env: BusEnv) -> None:
    translate_in = pull(bus_env, "translate")
    start_ingest(bus_env)
    with Publisher(bus_env.config, wait_s=10) as pub:
        pub.send("s\udcff", "A lone \ud800 half, and a pair \ud840\udc0b joined.")
    got = recv(translate_in)
    assert isinstance(got, Sentence)
    assert (got.stream, got.text) == ("s\ufffd", "A lone \ufffd half, and a pair \U0002000b joined.")
    translate_in.close(0)


def test_streams_whose_names_sanitise_alike_get_their_own_wav_files(tmp_path: Path) -> None:
    """`col/y` and `col_y` (and `Cli` / `cli` on a case-insensitive disk) were one folder: the
    second stream's sentence 0 overwrote the first's."""
    import numpy as np

    sink = WavSink(tmp_path)
    names = ["col/y", "col_y", "col?y", "Cli", "cli", "", "x" * 200, "x" * 200 + "y"]
    paths = [sink.write(name, 0, 0, np.zeros(80, np.float32), 8000) for name in names]
    assert len({str(p).lower() for p in paths}) == len(names)  # distinct even case-folded
    assert all(p.is_file() for p in paths)
    assert paths[0].parent.name.startswith("col_y-") and paths[0].name == "000000-0.wav"
    assert sink.path_for("col/y", 0, 0) == paths[0]  # the same stream: always the same folder
    assert all(p.parent.parent == tmp_path for p in paths)


def test_chunks_whose_indices_contradict_each_other_are_dropped_and_playback_goes_on(bus_env: BusEnv) -> None:
    """Chunk 5 (not last) then chunk 1 (last) of one sentence: playback counted chunks, found 2 =
    1 + 1 and looked up chunk 0: KeyError, and the node died. Now the contradicting chunk is a
    `dropped` event, the node keeps its pid, and the next sentence plays."""
    from tests.test_runtime import _chunks, ready

    bus_env.set_sections(playback={"sink": "wav", "stall_timeout_s": 1.0})
    acks = pull(bus_env, "acks")
    tap = subscribe(bus_env.config)
    bus_env.start("tap-proxy")
    proc = bus_env.start("node", "playback")
    ready(bus_env, "playback")
    push = bus_env.config.endpoints.connect_socket(zmq.Context.instance(), "playback")
    chunks, _ = _chunks("x", 0, n=6)
    import dataclasses

    push.send_multipart(encode(dataclasses.replace(chunks[5], last=False)))
    push.send_multipart(encode(dataclasses.replace(chunks[1], last=True)))
    dropped = _tap_events(tap, "dropped", "playback", 10)
    assert dropped and "contradicts" in dropped[0].detail["reason"], dropped
    time.sleep(1.5)
    assert proc.poll() is None
    for c in _chunks("y", 0)[0]:
        push.send_multipart(encode(c))
    got = [recv(acks) for _ in range(2)]  # x fails (never whole), y plays
    assert any(isinstance(m, Played) and m.stream == "y" for m in got), got
    assert proc.poll() is None
    push.close(linger=0)
    tap.close(linger=0)
