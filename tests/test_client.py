"""The publisher: no text lost to the slow-joiner problem, a clear failure when ingest is absent."""

from __future__ import annotations

import subprocess
import sys
import time

import zmq

from bus.client import IngestUnavailable, Publisher
from bus.messages import Message, Sentence, decode
from tests.conftest import REPO, BusEnv


def test_say_without_ingest_fails_within_3s_naming_the_endpoint(bus_env: BusEnv) -> None:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", "say", "Hello."],
        env=bus_env.env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0
    assert bus_env.config.endpoints.connect["text"] in proc.stderr
    assert "stream-tts up" in proc.stderr
    # The process start (interpreter, imports) is part of the 3 s the user waits.
    assert elapsed < 3.0 + 0.5, elapsed


def test_publisher_raises_when_ingest_is_absent(bus_env: BusEnv) -> None:
    t0 = time.monotonic()
    try:
        Publisher(bus_env.config, wait_s=0.5).open()
    except IngestUnavailable as exc:
        assert "no ingest is listening" in str(exc)
    else:
        raise AssertionError("no error")
    assert time.monotonic() - t0 < 1.5


def test_first_messages_right_after_connect_are_not_lost(bus_env: BusEnv) -> None:
    translate_in = bus_env.config.endpoints.bind_socket(zmq.Context.instance(), "translate")
    bus_env.start("node", "ingest")
    # Many short-lived publishers, each sending at once after connecting: the slow-joiner case.
    for i in range(20):
        with Publisher(bus_env.config, wait_s=10) as pub:
            pub.send(f"s{i}", f"Message number {i}.")
    got: set[str] = set()
    while len(got) < 20 and translate_in.poll(10_000):
        msg = decode(translate_in.recv_multipart())
        assert isinstance(msg, Sentence)
        got.add(msg.text)
    assert got == {f"Message number {i}." for i in range(20)}
    translate_in.close(0)


def test_say_reads_stdin_and_names_the_stream(bus_env: BusEnv) -> None:
    translate_in = bus_env.config.endpoints.bind_socket(zmq.Context.instance(), "translate")
    bus_env.start("node", "ingest")
    proc = subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", "say", "-", "--stream", "mine"],
        env=bus_env.env(),
        cwd=REPO,
        input="From stdin. Two sentences.",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    got = [decode(translate_in.recv_multipart()) for _ in range(2) if translate_in.poll(10_000)]
    assert [(m.stream, m.text) for m in got] == [("mine", "From stdin."), ("mine", "Two sentences.")]  # type: ignore[attr-defined]
    translate_in.close(0)


def test_text_longer_than_a_header_arrives_whole(bus_env: BusEnv) -> None:
    translate_in = bus_env.config.endpoints.bind_socket(zmq.Context.instance(), "translate")
    bus_env.start("node", "ingest")
    words = " ".join(f"word{i}" for i in range(4000))  # ~35 K characters, one sentence over 64 KiB in parts
    text = "".join(f"Sentence {i} says {words[: 100 + i]}. " for i in range(300))
    assert len(text.encode()) > 64 * 1024
    with Publisher(bus_env.config, wait_s=10) as pub:
        pub.send("long", text)
    got: list[Message] = []
    while len(got) < 300 and translate_in.poll(10_000):
        got.append(decode(translate_in.recv_multipart()))
    assert [m.seq for m in got] == list(range(300))  # type: ignore[attr-defined]
    assert got[7].text == f"Sentence 7 says {words[:107]}."  # type: ignore[attr-defined]
    translate_in.close(0)


def test_say_processes_that_exit_at_once_lose_nothing(bus_env: BusEnv) -> None:
    """pyzmq does not flush at exit: each `say` must wait on close until its text has left."""
    translate_in = bus_env.config.endpoints.bind_socket(zmq.Context.instance(), "translate")
    bus_env.start("node", "ingest")
    for i in range(8):
        proc = subprocess.run(
            [sys.executable, "-m", "stream_tts.cli", "say", "--stream", f"quick{i}", f"Quick exit {i}."],
            env=bus_env.env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
    got: set[str] = set()
    while len(got) < 8 and translate_in.poll(10_000):
        got.add(decode(translate_in.recv_multipart()).text)  # type: ignore[attr-defined]
    assert got == {f"Quick exit {i}." for i in range(8)}
    translate_in.close(0)
