"""The node runtime over real sockets and real processes: ingest and playback (no ML) as they run
under supervisord, driven by a test that stands in for their neighbours."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import zmq

from bench.fuzz_nodes import _is_bad, garbage
from bus.client import Publisher
from bus.messages import AudioChunk, Failed, Message, Played, Sentence, TapEvent, decode, encode
from bus.tap import events, subscribe
from tests.conftest import BusEnv, wait_for

RATE = 24000


def pull(env: BusEnv, name: str) -> zmq.Socket:
    """Bind the PULL socket a stage owns, as that stage would."""
    sock = env.config.endpoints.bind_socket(zmq.Context.instance(), name)
    return sock


def recv(sock: zmq.Socket, timeout_s: float = 10.0) -> Message:
    assert sock.poll(int(timeout_s * 1000)), "nothing arrived"
    return decode(sock.recv_multipart())


def heartbeat(env: BusEnv, node: str, pred: Any = None, timeout_s: float = 15.0) -> TapEvent:
    """The first heartbeat of `node` (matching pred) seen on the tap."""
    tap = subscribe(env.config)
    try:
        for ev in events(tap, timeout_s):
            if ev.node == node and ev.kind == "heartbeat" and (pred is None or pred(ev)):
                return ev
    finally:
        tap.close(linger=0)
    raise AssertionError(f"no matching heartbeat from {node}")


def ready(env: BusEnv, node: str) -> None:
    heartbeat(env, node, lambda ev: ev.detail["state"] == "ready")


def test_ingest_turns_text_into_numbered_sentences(bus_env: BusEnv) -> None:
    translate_in = pull(bus_env, "translate")
    bus_env.start("tap-proxy")
    bus_env.start("node", "ingest")
    with Publisher(bus_env.config, wait_s=10) as pub:
        pub.send("agent-1", "First sentence. Second one! And a third? ", final=False)
        pub.send("agent-1", "The last one has no end", final=True)
    got = [recv(translate_in) for _ in range(4)]
    assert all(isinstance(m, Sentence) for m in got)
    assert [(m.stream, m.seq, m.text) for m in got] == [  # type: ignore[attr-defined]
        ("agent-1", 0, "First sentence."),
        ("agent-1", 1, "Second one!"),
        ("agent-1", 2, "And a third?"),
        ("agent-1", 3, "The last one has no end"),
    ]
    # Stamps: the publisher's, then ingest's (received, sent), all on this machine's clocks.
    stamps = got[0].stamps  # type: ignore[attr-defined]
    assert [s.stage for s in stamps] == ["publisher", "ingest"]
    assert stamps[0].sent_mono_ns <= stamps[1].recv_mono_ns <= stamps[1].sent_mono_ns


def test_seq_keeps_increasing_across_an_ingest_restart(bus_env: BusEnv) -> None:
    translate_in = pull(bus_env, "translate")
    proc = bus_env.start("node", "ingest")
    with Publisher(bus_env.config, wait_s=10) as pub:
        pub.send("s", "One. Two.")
    assert [recv(translate_in).seq for _ in range(2)] == [0, 1]  # type: ignore[attr-defined]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    bus_env.start("node", "ingest", log_name="ingest-2")
    with Publisher(bus_env.config, wait_s=10) as pub:
        pub.send("s", "Three.")
    got = [recv(translate_in) for _ in range(3)]
    # what the killed ingest had open comes again (its send queue died with it); the new one is seq 2
    assert sorted((m.seq, m.attempt) for m in got) == [(0, 1), (1, 1), (2, 0)]  # type: ignore[attr-defined]


def _chunks(stream: str, seq: int, n: int = 3, attempt: int = 0) -> tuple[list[AudioChunk], np.ndarray]:
    t = np.arange(n * 2400) / RATE
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t)).astype("<f4")
    parts = np.array_split(pcm, n)
    chunks = [
        AudioChunk(
            stream=stream,
            seq=seq,
            index=i,
            last=i == n - 1,
            rate_hz=RATE,
            pcm=p.tobytes(),
            text_ja="こんにちは。",
            text_en="Hello.",
            attempt=attempt,
        )
        for i, p in enumerate(parts)
    ]
    return chunks, pcm


def test_playback_writes_each_sentence_once_in_chunk_order_and_acks(bus_env: BusEnv) -> None:
    acks = pull(bus_env, "acks")
    bus_env.start("node", "playback")
    push = bus_env.config.endpoints.connect_socket(zmq.Context.instance(), "playback")
    chunks, pcm = _chunks("s", 0)
    for c in [chunks[2], chunks[0], chunks[1]]:  # out of order on the wire
        push.send_multipart(encode(c))
    played = recv(acks)
    assert isinstance(played, Played)
    assert (played.stream, played.seq, played.samples, played.rate_hz) == ("s", 0, pcm.size, RATE)
    audio, rate = sf.read(played.wav_path, dtype="float32")
    assert rate == RATE
    assert np.max(np.abs(audio - pcm)) <= 1.5 / 32768  # 16-bit WAV: within one LSB
    record = json.loads((bus_env.data_dir / "played.jsonl").read_text().splitlines()[0])
    assert record["text_en"] == "Hello." and record["text_ja"] == "こんにちは。"
    assert [s[0] for s in record["stamps"]][-1] == "playback"
    # A re-sent attempt of the same sentence is not played again, only acked again (once, at its last
    # chunk): the first ack may have died with a crash, and ingest would re-send it for ever.
    again, _ = _chunks("s", 0, attempt=1)
    for c in again:
        push.send_multipart(encode(c))
    reack = recv(acks)
    assert isinstance(reack, Played) and (reack.seq, reack.attempt, reack.samples) == (0, 1, 0)
    assert not acks.poll(1000)
    assert len((bus_env.data_dir / "played.jsonl").read_text().splitlines()) == 1
    push.close(linger=0)


def test_playback_fails_a_sentence_whose_chunks_disagree(bus_env: BusEnv) -> None:
    acks = pull(bus_env, "acks")
    bus_env.start("node", "playback")
    push = bus_env.config.endpoints.connect_socket(zmq.Context.instance(), "playback")
    a, _ = _chunks("s", 5, n=2)
    push.send_multipart(encode(a[0]))
    push.send_multipart(
        encode(AudioChunk(stream="s", seq=5, index=1, last=True, rate_hz=16000, pcm=a[1].pcm))
    )
    failed = recv(acks)
    assert isinstance(failed, Failed) and failed.stage == "playback" and "formats" in failed.reason
    push.close(linger=0)


@pytest.mark.parametrize("node, endpoint", [("ingest", "text"), ("ingest", "acks"), ("playback", "playback")])
def test_a_thousand_bad_frames_are_counted_and_the_node_keeps_working(
    bus_env: BusEnv, node: str, endpoint: str
) -> None:
    bus_env.start("tap-proxy")
    proc = bus_env.start("node", node)
    ready(bus_env, node)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    if endpoint == "text":  # ingest's input is a SUB: send as a publisher does, after the subscription
        sock = ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.XPUB_NODROP, 1)
        sock.connect(bus_env.config.endpoints.connect["text"])
        assert sock.poll(5000)
        sock.recv()
    else:
        sock = bus_env.config.endpoints.connect_socket(ctx, endpoint)
    rng = random.Random(1234)
    n = 0
    while n < 1000:
        frames = garbage(rng)
        if _is_bad(frames):  # a mutated frame can be valid by chance: that would be real work
            sock.send_multipart(frames)
            n += 1
    hb = heartbeat(bus_env, node, lambda ev: ev.detail["dropped"] >= n, timeout_s=20)
    assert hb.detail["dropped"] == n and hb.detail["state"] == "ready"
    assert proc.poll() is None
    # ... and it still does its job.
    if node == "ingest" and endpoint == "text":
        translate_in = pull(bus_env, "translate")
        with Publisher(bus_env.config, wait_s=10) as pub:
            pub.send("s", "Still here.")
        assert recv(translate_in).text == "Still here."  # type: ignore[attr-defined]
    elif node == "playback":
        acks = pull(bus_env, "acks")
        for c in _chunks("s", 0)[0]:
            sock.send_multipart(encode(c))
        assert isinstance(recv(acks), Played)
    sock.close(linger=0)


def test_sigterm_stops_a_node_promptly_and_cleanly(bus_env: BusEnv) -> None:
    proc = bus_env.start("node", "playback")
    bus_env.start("tap-proxy")
    ready(bus_env, "playback")
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    assert time.monotonic() - t0 < 2.0


def test_node_start_fails_clearly_when_its_port_is_taken(bus_env: BusEnv) -> None:
    blocker = pull(bus_env, "playback")
    proc = bus_env.start("node", "playback")
    assert proc.wait(timeout=15) != 0
    assert wait_for(lambda: "cannot bind playback" in bus_env.log("node-playback"), 2)
    blocker.close(linger=0)


def test_an_oversize_frame_is_refused_before_it_is_buffered_and_the_node_goes_on(bus_env: BusEnv) -> None:
    """A 20 MiB frame (past maxmsgsize) costs its sender the connection; the node never sees it,
    stays up, and takes the next sender's sentence."""
    from bus.endpoints import MAX_MSG_BYTES

    acks = pull(bus_env, "acks")
    bus_env.start("tap-proxy")
    proc = bus_env.start("node", "playback")
    ready(bus_env, "playback")
    before = heartbeat(bus_env, "playback").detail
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    big = ctx.socket(zmq.PUSH)  # a plain socket: no maxmsgsize of our own on the sending side
    big.setsockopt(zmq.LINGER, 0)
    big.connect(bus_env.config.endpoints.connect["playback"])
    chunk = _chunks("big", 0)[0][0]
    header = encode(chunk)[0]
    big.send_multipart([header, b"\0" * (MAX_MSG_BYTES + 3 * 1024 * 1024)])
    time.sleep(2.0)
    assert proc.poll() is None  # still running
    after = heartbeat(bus_env, "playback").detail
    assert after["pid"] == before["pid"]
    assert after["received"] == before["received"] and after["dropped"] == before["dropped"]
    big.close()
    push = bus_env.config.endpoints.connect_socket(ctx, "playback")
    chunks, _ = _chunks("s", 0)
    for c in chunks:
        push.send_multipart(encode(c))
    played = recv(acks)
    assert isinstance(played, Played) and played.stream == "s"
    push.close(linger=0)
