"""Playback's one ordering rule (nodes/playback/seq_order.py) on its own, and the WAV sink keeping it: a
sentence waits for a missing earlier one up to gap_wait_s, then the gap is skipped (an event) and one
arriving after that is failed, never played out of order; a restarted playback goes on after
played.jsonl's last seq. The device path keeps the same rule: tests/test_playback_device_order.py."""

from __future__ import annotations

import json
import time

import zmq

from bus.messages import Failed, Played, encode
from nodes.playback.seq_order import Decision, SeqOrder, Turn, lowest_per_stream
from tests.conftest import BusEnv
from tests.test_runtime import _chunks, pull, ready, recv


def test_a_stream_starts_at_seq_0_or_after_the_last_that_went_out() -> None:
    order = SeqOrder(1.0, went_out=[("a", 0), ("a", 2), ("a", 1)])
    assert order.due("a") == 3 and order.due("new") == 0
    assert order.decide("a", 3, 0.0).turn is Turn.GO
    assert order.decide("new", 0, 0.0).turn is Turn.GO
    assert order.decide("new", 1, 0.0).turn is Turn.WAIT


def test_a_later_seq_waits_gap_wait_s_then_goes_and_the_skipped_one_is_late() -> None:
    order = SeqOrder(1.5)
    assert order.decide("s", 3, 1.49).turn is Turn.WAIT
    d = order.decide("s", 3, 1.5)
    assert d.turn is Turn.GO and list(d.skipped) == [0, 1, 2] and "1.5 s" in d.reason
    order.went_out("s", 3)
    late = order.decide("s", 1, 100.0)
    assert late.turn is Turn.LATE and order.late("s", 1)
    assert "after seq 3" in late.reason and "skipped" in late.reason
    assert order.decide("s", 4, 0.0) == Decision(Turn.GO)  # the next one: nothing skipped


def test_after_a_cancel_any_seq_goes_then_order_resumes_from_it() -> None:
    order = SeqOrder(1.0, went_out=[("s", 4), ("t", 0)])
    order.cancel(["s"])
    assert order.due("s") is None and not order.late("s", 0)
    assert order.decide("s", 9, 0.0).turn is Turn.GO and order.due("t") == 1
    order.went_out("s", 9)
    assert order.due("s") == 10 and order.decide("s", 8, 0.0).turn is Turn.LATE


def test_a_sentence_that_never_got_out_is_due_again_unless_a_later_one_went() -> None:
    order = SeqOrder(1.0)
    order.went_out("s", 0)
    order.take_back("s", 0)  # failed before a later one went: its retry may go
    assert order.due("s") == 0
    order.went_out("s", 0)
    order.went_out("s", 1)
    order.take_back("s", 0)  # seq 1 is out already: a retry of 0 would be out of order
    assert order.due("s") == 2
    order.went_out("s", 3)  # 2 skipped
    order.rewind("s", 1)  # the device died holding 1 and 3: both are due again, from 1
    assert order.due("s") == 1
    order.rewind("s", 3)
    assert order.due("s") == 1


def test_lowest_per_stream_picks_each_streams_lowest_seq() -> None:
    items = [("a", 2, "a2"), ("b", 1, "b1"), ("a", 0, "a0"), ("a", 0, "a0-again")]
    heads = lowest_per_stream(items, lambda x: (x[0], x[1]))
    assert {k: v[2] for k, v in heads.items()} == {"a": "a0", "b": "b1"}


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
