"""Idempotent stages: cancelled, superseded and duplicate messages are dropped, by the runtime,
for every node alike; here through the real translate node on the tiny GGUF."""

from __future__ import annotations

import time
from pathlib import Path

import zmq

from bus.freshness import MAX_IDS, Freshness
from bus.messages import Cancel, Clause, Played, Sentence, Stamp, decode, encode
from tests.conftest import BusEnv
from tests.test_runtime import heartbeat, pull, ready


def _sentence(seq: int, attempt: int = 0, at_ns: int | None = None, stream: str = "s") -> Sentence:
    t = at_ns or time.time_ns()
    return Sentence(
        stream=stream, seq=seq, text="Hello.", attempt=attempt, stamps=(Stamp("ingest", t, 0, t, 0),)
    )


def test_rules() -> None:
    f = Freshness()
    assert f.stale(_sentence(0)) is None
    assert f.stale(_sentence(0)) == "duplicate"
    assert f.stale(_sentence(1, attempt=2)) is None
    assert "older" in str(f.stale(_sentence(1, attempt=1)))
    assert f.stale(_sentence(1, attempt=3)) is None  # a newer attempt is fresh work
    t = time.time_ns()
    f.cancel(Cancel(stream="s", stamps=(Stamp("ingest", t, 0, t, 0),)))
    assert f.stale(_sentence(7, at_ns=t - 1)) == "cancelled"
    assert f.stale(_sentence(8, at_ns=t + 1)) is None  # sent after the cancel: the new turn
    assert f.stale(_sentence(9, at_ns=t - 1, stream="other")) is None
    f.cancel(Cancel(stream=""))  # every stream, as of now
    assert f.stale(_sentence(10, at_ns=t + 2, stream="other")) == "cancelled"


def test_memory_is_bounded() -> None:
    f = Freshness()
    for i in range(MAX_IDS + 100):
        f.stale(_sentence(i))
    assert len(f._seen) == MAX_IDS and len(f._attempts) == MAX_IDS


def test_translate_node_acts_once_per_attempt_and_not_on_cancelled_work(
    bus_env: BusEnv, tiny_models: tuple[Path, Path]
) -> None:
    bus_env.set_sections(translate={"model": str(tiny_models[0]), "max_tokens": 24})
    out = pull(bus_env, "synthesize")
    control = bus_env.config.endpoints.bind_socket(zmq.Context.instance(), "control")  # we play ingest
    bus_env.start("tap-proxy")
    bus_env.start("node", "translate")
    ready(bus_env, "translate")
    push = bus_env.config.endpoints.connect_socket(zmq.Context.instance(), "translate")

    def clauses_of(seq: int, timeout: float = 20) -> list[Clause]:
        got: list[Clause] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not out.poll(200):
                continue
            msg = decode(out.recv_multipart())
            assert isinstance(msg, Clause)
            got.append(msg)
            if msg.seq >= seq and msg.last:
                break
        return got

    first = _sentence(0)
    push.send_multipart(encode(first))
    push.send_multipart(encode(first))  # delivered twice
    push.send_multipart(encode(_sentence(1, attempt=1)))
    push.send_multipart(encode(_sentence(1, attempt=0)))  # a late, older attempt
    got = clauses_of(1)
    assert {(c.seq, c.attempt) for c in got} == {(0, 0), (1, 1)}
    assert sum(c.last for c in got) == 2  # each sentence translated once
    hb = heartbeat(bus_env, "translate", lambda ev: ev.detail["stale"] >= 2)
    assert hb.detail["stale"] == 2
    # A cancel: work ingest sent before it is dropped, work sent after it is done.
    before = time.time_ns()
    time.sleep(0.01)
    control.send_multipart(encode(Cancel(stream="s", reason="new turn")))
    time.sleep(0.5)  # PUB/SUB: let the cancel arrive first
    push.send_multipart(encode(_sentence(2, at_ns=before)))
    push.send_multipart(encode(_sentence(3)))
    got = clauses_of(3)
    assert {c.seq for c in got} == {3}
    assert not out.poll(500)
    push.close(0)
    control.close(0)


def test_acks_are_never_stale_even_when_they_crossed_a_cancel() -> None:
    f = Freshness()
    stamp = Stamp("ingest", 1, 1, 100, 100)  # ingest sent the sentence at t=100 ...
    f.cancel(Cancel(stream="s", stamps=(Stamp("ingest", 200, 200, 200, 200),)))  # ... cancelled at 200
    played = Played(
        stream="s",
        seq=0,
        samples=1,
        rate_hz=24000,
        first_sample_wall_ns=1,
        last_sample_wall_ns=2,
        stamps=(stamp,),
    )
    assert f.stale(played) is None and f.stale(played) is None  # and not a "duplicate" either
    assert f.stale(Sentence(stream="s", seq=1, text="x", stamps=(stamp,))) == "cancelled"


def test_resent_and_given_up_make_what_is_still_queued_stale() -> None:
    f = Freshness()
    f.supersede("s", 3, 2)
    assert "older" in (f.stale(Sentence(stream="s", seq=3, text="x", attempt=1)) or "")
    assert f.stale(Sentence(stream="s", seq=3, text="x", attempt=2)) is None
    f.give_up("s", 4)
    assert f.stale(Sentence(stream="s", seq=4, text="x", attempt=9)) == "given up by ingest"
