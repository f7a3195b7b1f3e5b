"""Playback's WAV sink keeps seq order per stream, as the device player does: a sentence waits for a
missing earlier one up to gap_wait_s, then the gap is skipped (an event) and one arriving after that
is failed, never played out of order; a restarted playback goes on after played.jsonl's last seq."""

from __future__ import annotations

import json
import time

import zmq

from bus.messages import Failed, Played, encode
from tests.conftest import BusEnv
from tests.test_runtime import _chunks, pull, ready, recv


def _played(env: BusEnv) -> list[tuple[str, int]]:
    path = env.data_dir / "played.jsonl"
    if not path.exists():
        return []
    return [(r["stream"], r["seq"]) for r in map(json.loads, path.read_text().splitlines())]


def _send(push: zmq.Socket, stream: str, seq: int) -> None:
    for c in _chunks(stream, seq)[0]:
        push.send_multipart(encode(c))


def test_wav_sentences_play_in_seq_order_skip_a_gap_and_resume_after_a_restart(bus_env: BusEnv) -> None:
    bus_env.set_sections(playback={"sink": "wav", "gap_wait_s": 1.0})
    acks = pull(bus_env, "acks")
    bus_env.start("tap-proxy")
    proc = bus_env.start("node", "playback")
    ready(bus_env, "playback")
    push = bus_env.config.endpoints.connect_socket(zmq.Context.instance(), "playback")
    _send(push, "o", 1)  # overtook seq 0 on the way
    time.sleep(0.4)
    assert _played(bus_env) == []  # waits for 0
    _send(push, "o", 0)
    assert [recv(acks).seq, recv(acks).seq] == [0, 1]  # type: ignore[attr-defined]
    assert _played(bus_env) == [("o", 0), ("o", 1)]
    # seq 2 never comes: seq 3 waits gap_wait_s, then plays; 2 arriving later is failed, not played.
    t0 = time.monotonic()
    _send(push, "o", 3)
    ack = recv(acks)
    assert isinstance(ack, Played) and ack.seq == 3 and time.monotonic() - t0 >= 0.9
    _send(push, "o", 2)
    late = recv(acks)
    assert isinstance(late, Failed) and late.seq == 2 and "skipped" in late.reason
    assert _played(bus_env) == [("o", 0), ("o", 1), ("o", 3)]
    # A restarted playback knows stream o is at seq 4: seq 5 alone waits, 4 then 5 play.
    proc.kill()
    proc.wait(10)
    bus_env.start("node", "playback")
    ready(bus_env, "playback")
    _send(push, "o", 5)
    time.sleep(0.5)
    assert _played(bus_env)[-1] == ("o", 3)
    _send(push, "o", 4)
    assert [recv(acks).seq, recv(acks).seq] == [4, 5]  # type: ignore[attr-defined]
    assert _played(bus_env)[-2:] == [("o", 4), ("o", 5)]
    push.close(linger=0)
