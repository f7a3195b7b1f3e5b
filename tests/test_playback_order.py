"""Playback's one ordering rule (nodes/playback/seq_order.py) on its own, and the WAV sink keeping it: a
sentence waits for a missing earlier one until ingest gives that one up (GivenUp), or, the word
lost, twice the pipeline's give_up_s; then the gap is skipped (an event) and one arriving after
that is failed, never played out of order; a restarted playback goes on after played.jsonl's last
seq. The device path keeps the same rule: tests/test_playback_device_order.py."""

from __future__ import annotations

import json
import time

import zmq

from bus.messages import Failed, GivenUp, Played, encode
from nodes.playback.seq_order import Decision, SeqOrder, Turn, lowest_per_stream
from tests.conftest import BusEnv
from tests.test_runtime import _chunks, pull, ready, recv


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_stream_starts_at_seq_0_or_after_the_last_that_went_out() -> None:
    order = SeqOrder(1.0, went_out=[("a", 0), ("a", 2), ("a", 1)], now=Clock())
    assert order.due("a") == 3 and order.due("new") == 0
    assert order.decide("a", 3, 100.0).turn is Turn.GO
    assert order.decide("new", 0, 100.0).turn is Turn.GO
    assert order.decide("new", 1, 100.0).turn is Turn.WAIT


def test_a_later_seq_waits_for_the_missing_one_until_ingest_gives_it_up() -> None:
    clock = Clock()
    order = SeqOrder(240.0, now=clock)
    clock.t += 200  # however long: no local timer skips a seq that can still come
    assert order.decide("s", 2, ready_since=100.0).turn is Turn.WAIT
    order.given_up("s", 1)  # ahead of the due seq: remembered
    assert order.due("s") == 0 and order.decide("s", 2, 100.0).turn is Turn.WAIT
    order.given_up("s", 0)  # the due one: the stream goes on past 0 and 1
    assert order.due("s") == 2 and order.decide("s", 2, 100.0) == Decision(Turn.GO)
    order.went_out("s", 2)
    assert order.decide("s", 1, 0.0).turn is Turn.LATE


def test_a_lost_word_costs_at_most_max_wait_s_from_when_the_gap_held_the_stream_up() -> None:
    clock = Clock()
    order = SeqOrder(1.5, now=clock)
    order.went_out("s", 0)  # seq 1 due from t=100
    clock.t = 101.0
    assert order.decide("s", 3, ready_since=100.5).turn is Turn.WAIT
    clock.t = 101.49
    assert order.decide("s", 3, ready_since=100.5).turn is Turn.WAIT
    clock.t = 102.0
    d = order.decide("s", 3, ready_since=100.5)
    assert d.turn is Turn.GO and list(d.skipped) == [1, 2] and "1.5 s" in d.reason
    order.went_out("s", 3)
    late = order.decide("s", 1, 0.0)
    assert late.turn is Turn.LATE and order.late("s", 1)
    assert "after seq 3" in late.reason and "skipped" in late.reason
    assert order.decide("s", 4, 0.0) == Decision(Turn.GO)  # the next one: nothing skipped
    clock.t = 200.0  # seq 4 went out long ago; 6 just came: the wait counts from when 5 became due
    order.went_out("s", 4)
    assert order.decide("s", 6, ready_since=150.0).turn is Turn.WAIT


def test_after_a_cancel_any_seq_goes_then_order_resumes_from_it() -> None:
    order = SeqOrder(1.0, went_out=[("s", 4), ("t", 0)], now=Clock())
    order.cancel(["s"])
    assert order.due("s") is None and not order.late("s", 0)
    assert order.decide("s", 9, 0.0).turn is Turn.GO and order.due("t") == 1
    order.went_out("s", 9)
    assert order.due("s") == 10 and order.decide("s", 8, 0.0).turn is Turn.LATE


def test_a_sentence_that_never_got_out_is_due_again_unless_a_later_one_went() -> None:
    order = SeqOrder(1.0, now=Clock())
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
    bus_env.set_sections(playback={"sink": "wav"}, give_up_s=0.5)  # a lost word: 1 s
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
    # seq 2 never comes and no GivenUp either: seq 3 waits 2 x give_up_s, then plays; 2 arriving
    # later is failed, not played.
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


def test_ingests_given_up_lets_a_waiting_stream_go_on_at_once(bus_env: BusEnv) -> None:
    """No timer skips a gap that can still be filled: only ingest's word does (GivenUp)."""
    bus_env.set_sections(playback={"sink": "wav"})  # give_up_s: the default 120 s
    acks = pull(bus_env, "acks")
    control = bus_env.config.endpoints.bind_socket(zmq.Context.instance(), "control")  # as ingest does
    bus_env.start("tap-proxy")
    bus_env.start("node", "playback")
    ready(bus_env, "playback")
    push = bus_env.config.endpoints.connect_socket(zmq.Context.instance(), "playback")
    _send(push, "g", 0)
    assert recv(acks).seq == 0  # type: ignore[attr-defined]
    _send(push, "g", 3)
    _send(push, "g", 2)
    time.sleep(2.0)
    assert _played(bus_env) == [("g", 0)]  # 2 and 3 wait for 1
    t0 = time.monotonic()
    control.send_multipart(encode(GivenUp(stream="g", seq=1, reason="failed 3 times")))
    assert [recv(acks).seq, recv(acks).seq] == [2, 3]  # type: ignore[attr-defined]
    assert time.monotonic() - t0 < 2.0
    assert _played(bus_env) == [("g", 0), ("g", 2), ("g", 3)]
    _send(push, "g", 1)  # a late attempt of the given-up seq: stale, never played
    assert not acks.poll(1000) and _played(bus_env)[-1] == ("g", 3)
    push.close(linger=0)
    control.close(linger=0)
