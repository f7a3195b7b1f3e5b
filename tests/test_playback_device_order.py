"""Seq order on the sound device, by the rule the WAV sink keeps (nodes/playback/seq_order.py): the playback
node runs as its own process and plays through sounddevice → PortAudio → ALSA's file plugin (exact
samples, unpaced: tests/audio_stack.py); the test reads back what came out of the device."""

from __future__ import annotations

import json
import time
from pathlib import Path

import zmq

from bus.messages import AudioChunk, GivenUp, Pause, Played, Resume, TapEvent
from nodes.playback.player import edge_fades
from tests.audio_stack import (
    AudioBusEnv,
    TapLog,
    chunks_of,
    find_exact,
    push_socket,
    send,
    speechlike,
)
from tests.conftest import wait_for
from tests.test_playback_audio import (
    FADE_N,
    INT16_TOL,
    Control,
    _order_in,
    acks_socket,
    read_out,
    recv_acks,
    start,
)

# The file plugin is not paced: a sentence must be whole before it starts (jitter_ms), or it starves.
WHOLE = {"jitter_ms": 5000, "idle_close_s": 2.0}


def played_seqs(env: AudioBusEnv) -> list[int]:
    path = env.data_dir / "played.jsonl"
    return [json.loads(line)["seq"] for line in path.read_text().splitlines()] if path.exists() else []


def received_count(tap: TapLog) -> int:
    """Messages playback had received by now, from its first heartbeat sent after this call."""
    now = time.time_ns()

    def fresh() -> list[TapEvent]:
        return [
            e for e in list(tap.events) if e.kind == "heartbeat" and e.node == "playback" and e.wall_ns > now
        ]

    assert wait_for(lambda: bool(fresh()), 10), "no heartbeat from playback"
    return int(fresh()[0].detail.get("received", 0))


def send_all(tap: TapLog, push: zmq.Socket, chunks: list[AudioChunk]) -> None:
    """Send, and wait until playback has taken every chunk."""
    seen = received_count(tap)
    send(push, chunks)
    ok = wait_for(lambda: tap.heartbeat_count("received") >= seen + len(chunks), 10)
    assert ok, "playback did not take them"


def n_events(tap: TapLog, kind: str) -> int:
    return len([e for e in list(tap.events) if e.kind == kind and e.node == "playback"])


def test_device_plays_seq_0_before_seq_1_whose_chunks_all_came_first(
    file_env: tuple[AudioBusEnv, Path],
) -> None:
    env, out = file_env
    acks = acks_socket(env)
    tap = start(env, **WHOLE)
    assert tap.wait("sink")[0].detail["sink"] == "device"
    push = push_socket(env)
    pcm = {"o0": speechlike(0.5, 61), "o1": speechlike(0.4, 62)}
    send_all(tap, push, chunks_of("o", 1, pcm["o1"], 3))
    time.sleep(0.5)
    assert not acks.poll(0) and played_seqs(env) == []  # seq 1 is whole, but 0 is due: it waits
    send(push, chunks_of("o", 0, pcm["o0"], 3))
    got = recv_acks(acks, 2)
    assert [(type(m), m.seq) for m in got] == [(Played, 0), (Played, 1)]  # type: ignore[attr-defined]
    tap.wait("stream_closed")  # the file plugin fixes the WAV header on close
    assert _order_in(read_out(out), pcm) == ["o0", "o1"]
    assert "skipped" not in tap.kinds()
    tap.close()


def test_device_takes_a_stream_up_after_played_jsonl_when_restarted(
    file_env: tuple[AudioBusEnv, Path], tmp_path: Path
) -> None:
    env, _ = file_env
    acks = acks_socket(env)
    tap = start(env, **WHOLE)
    proc = env.procs[-1]
    push = push_socket(env)
    pcm = {f"r{q}": speechlike(0.3, 70 + q) for q in range(5)}
    for q in range(3):
        send(push, chunks_of("r", q, pcm[f"r{q}"], 2))
    assert [m.seq for m in recv_acks(acks, 3)] == [0, 1, 2]  # type: ignore[attr-defined]
    proc.kill()
    proc.wait(10)
    assert played_seqs(env) == [0, 1, 2]
    out2 = tmp_path / "alsa" / "after-restart.wav"
    env.extra_env["AUDIO_SINK_FILE"] = str(out2)  # the restarted node's device writes here
    beats = len([e for e in list(tap.events) if e.kind == "heartbeat" and e.node == "playback"])
    env.start("node", "playback", log_name="node-playback-2")
    tap.wait("heartbeat", n=beats + 1, timeout=30, state="ready")
    closed = n_events(tap, "stream_closed")
    send_all(tap, push, chunks_of("r", 4, pcm["r4"], 2))
    time.sleep(0.5)
    assert not acks.poll(0) and played_seqs(env) == [0, 1, 2]  # 3 is due: 4 waits for it
    send(push, chunks_of("r", 3, pcm["r3"], 2))
    got = recv_acks(acks, 2)
    assert [(type(m), m.seq) for m in got] == [(Played, 3), (Played, 4)]  # type: ignore[attr-defined]
    tap.wait("stream_closed", n=closed + 1)
    rec = read_out(out2)
    assert _order_in(rec, {"r3": pcm["r3"], "r4": pcm["r4"]}) == ["r3", "r4"]
    for q in range(3):  # nothing played before the restart plays again
        assert find_exact(rec, edge_fades(pcm[f"r{q}"], FADE_N), tol=INT16_TOL) < 0
    assert played_seqs(env) == [0, 1, 2, 3, 4]
    tap.close()


def test_device_skips_a_missing_seq_only_on_ingests_word_and_never_plays_it_late(
    file_env: tuple[AudioBusEnv, Path],
) -> None:
    env, out = file_env
    acks = acks_socket(env)
    tap = start(env, **WHOLE)  # give_up_s: the default
    control = Control(env, tap)
    push = push_socket(env)
    pcm = {f"g{q}": speechlike(0.3, 80 + q) for q in range(3)}
    send(push, chunks_of("g", 0, pcm["g0"], 2))
    assert [m.seq for m in recv_acks(acks, 1)] == [0]  # type: ignore[attr-defined]
    send(push, chunks_of("g", 2, pcm["g2"], 2))  # seq 1 is missing: 2 waits, however long
    assert not acks.poll(2000), "seq 2 went before ingest gave seq 1 up"
    t0 = time.monotonic()
    control.send(GivenUp(stream="g", seq=1, reason="failed 3 times"), "given_up")
    ack = recv_acks(acks, 1)[0]
    assert isinstance(ack, Played) and ack.seq == 2 and time.monotonic() - t0 < 2.0
    skipped = tap.wait("skipped")
    assert len(skipped) == 1 and (skipped[0].stream, skipped[0].seq) == ("g", 1)
    send(push, chunks_of("g", 1, pcm["g1"], 2))  # the stream is still open: it would play if taken
    assert not acks.poll(1000), "a given-up seq was taken"
    tap.wait("stream_closed")
    rec = read_out(out)
    assert _order_in(rec, {"g0": pcm["g0"], "g2": pcm["g2"]}) == ["g0", "g2"]
    assert find_exact(rec, edge_fades(pcm["g1"], FADE_N), tol=INT16_TOL) < 0
    assert played_seqs(env) == [0, 2]
    control.close()
    tap.close()


def test_device_streams_the_next_sentence_in_before_the_one_before_it_ends(
    file_env: tuple[AudioBusEnv, Path],
) -> None:
    """The next in order reaches the player chunk by chunk: it starts before its last chunk is sent,
    and straight after the sentence before (no sample of silence between them)."""
    env, out = file_env
    acks = acks_socket(env)
    tap = start(env, idle_close_s=2.0)  # the default 80 ms jitter buffer
    control = Control(env, tap)
    control.send(Pause(), "paused")  # both are in before anything plays: the unpaced device is fast
    push = push_socket(env)
    a, b = speechlike(0.5, 91), speechlike(0.6, 92)
    cb = chunks_of("t", 1, b, 4)
    send_all(tap, push, [*chunks_of("t", 0, a, 3), *cb[:3]])
    control.send(Resume(), "resumed")
    assert wait_for(lambda: any(e.kind == "started" and e.seq == 1 for e in list(tap.events)), 10), (
        "seq 1 did not start on its first chunks"
    )
    send(push, cb[3:])
    got = recv_acks(acks, 2)
    assert [(type(m), m.seq) for m in got] == [(Played, 0), (Played, 1)]  # type: ignore[attr-defined]
    tap.wait("stream_closed")
    rec = read_out(out)
    at_a = find_exact(rec, edge_fades(a, FADE_N), tol=INT16_TOL)
    head = sum(c.samples for c in cb[:3])
    want_b = edge_fades(b, FADE_N)
    assert at_a >= 0 and find_exact(rec, want_b[:head], start=at_a, tol=INT16_TOL) == at_a + a.size
    assert find_exact(rec, want_b[head:], start=at_a + a.size + head, tol=INT16_TOL) >= 0
    assert "underrun" in tap.kinds()  # seq 1 ran dry waiting for its last chunk: it was streaming
    control.close()
    tap.close()
