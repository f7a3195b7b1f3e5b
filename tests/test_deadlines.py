"""Re-send deadlines from measured end-to-end times (nodes/ingest/deadlines.py), and through the real ingest
node: acks that took ~1 s make the next deadline ~2 s instead of the 30 s prior, a restarted ingest
keeps that from its journal, and a failed attempt is re-sent at once (an older one is ignored)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq

from bus.client import Publisher
from bus.journal import PLAYED, Journal
from bus.messages import Cancel, Failed, GivenUp, Played, Resent, Sentence, decode, encode
from nodes.ingest.deadlines import CHARS_FLOOR, WARMUP, DeadlineEstimator, DeadlinePolicy
from tests.conftest import BusEnv

POLICY = DeadlinePolicy(base_s=30.0, per_char_s=0.5, margin=2.0, quantile=0.9, min_s=1.0, max_s=60.0)


def test_the_prior_holds_until_enough_is_measured() -> None:
    est = DeadlineEstimator(POLICY)
    assert est.deadline_s(20) == 30.0 + 0.5 * 20
    for _ in range(WARMUP - 1):
        est.observe(32, 1.6)
    assert est.seconds_per_char() is None and est.deadline_s(20) == 40.0
    est.observe(32, 1.6)
    assert est.seconds_per_char() == pytest.approx(0.05)
    assert est.deadline_s(40) == pytest.approx(2.0 * 0.05 * 40)


def test_short_sentences_count_as_the_floor_and_the_bounds_hold() -> None:
    est = DeadlineEstimator(POLICY)
    for _ in range(WARMUP):
        est.observe(4, 0.8)  # 4 characters, 0.8 s: mostly fixed cost, measured as CHARS_FLOOR chars
    rate = 0.8 / CHARS_FLOOR
    assert est.seconds_per_char() == pytest.approx(rate)
    assert est.deadline_s(2) == pytest.approx(max(1.0, 2.0 * rate * CHARS_FLOOR))
    assert est.deadline_s(10_000) == 60.0  # max_s
    fast = DeadlineEstimator(POLICY)
    fast.seed([(50, 0.01)] * WARMUP)
    assert fast.deadline_s(50) == 1.0  # min_s


def test_a_high_quantile_is_robust_to_one_outlier_but_follows_a_slowdown() -> None:
    est = DeadlineEstimator(POLICY)
    for _ in range(19):
        est.observe(20, 1.0)
    est.observe(20, 100.0)  # one sentence stuck behind a crash
    assert est.deadline_s(20) == pytest.approx(2.0 * 1.0)
    for _ in range(30):  # the pipeline really got slower (a long queue, a slower model)
        est.observe(20, 4.0)
    assert est.deadline_s(20) == pytest.approx(2.0 * 4.0)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("quantile", 0.0, "deadline_quantile"),
        ("quantile", 1.5, "deadline_quantile"),
        ("margin", 0.5, "deadline_margin"),
        ("min_s", -1.0, "deadline_min_s"),
        ("max_s", "soon", "deadline_max_s"),
        ("min_s", 700.0, "exceeds deadline_max_s"),
    ],
)
def test_bad_settings_name_the_key(key: str, value: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        DeadlineEstimator(DeadlinePolicy(**{key: value}))  # type: ignore[arg-type]


def test_the_journal_gives_first_attempt_times_to_seed_from(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    far = time.time_ns() + 10**12
    for text in ("one two three.", "four.", "never acked."):
        j.add("s", text, far)
    j.finish("s", 0, PLAYED)
    j.retry("s", 1, far)  # played, but only at its second attempt: not a clean measurement
    j.finish("s", 1, PLAYED)
    times = j.first_attempt_times(10)
    assert [c for c, _ in times] == [len("one two three.")]
    assert 0 <= times[0][1] < 5


# ---- through the real ingest node ------------------------------------------------------------------


class Pipeline:
    """ingest as a real process; this test is translate (PULL) and playback (acks PUSH)."""

    def __init__(self, env: BusEnv) -> None:
        self.env = env
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.sentences = env.config.endpoints.bind_socket(ctx, "translate")
        self.acks = env.config.endpoints.connect_socket(ctx, "acks")
        self.start()

    def start(self) -> None:
        self.proc = self.env.start("node", "ingest")
        with Publisher(self.env.config, wait_s=15):
            pass

    def say(self, stream: str, text: str) -> None:
        with Publisher(self.env.config, wait_s=15) as pub:
            pub.send(stream, text)

    def next_sentence(self, timeout_s: float) -> tuple[Sentence, float]:
        assert self.sentences.poll(int(timeout_s * 1000)), "no sentence from ingest"
        msg = decode(self.sentences.recv_multipart())
        assert isinstance(msg, Sentence)
        return msg, time.monotonic()

    def played(self, s: Sentence) -> None:
        ack = Played(
            stream=s.stream,
            seq=s.seq,
            samples=1,
            rate_hz=24000,
            first_sample_wall_ns=1,
            last_sample_wall_ns=2,
            attempt=s.attempt,
            stamps=s.stamps,
        )
        self.acks.send_multipart(encode(ack))

    def failed(self, s: Sentence, attempt: int) -> None:
        nack = Failed(stream=s.stream, seq=s.seq, stage="synthesize", reason="test", attempt=attempt)
        self.acks.send_multipart(encode(nack))


def test_ingest_sets_deadlines_from_measured_acks_and_keeps_them_across_a_restart(bus_env: BusEnv) -> None:
    bus_env.set_sections(
        ingest={
            "deadline_base_s": 30.0,
            "deadline_margin": 2.0,
            "deadline_min_s": 1.0,
            "deadline_max_s": 60.0,
        }
    )
    p = Pipeline(bus_env)
    for i in range(WARMUP):  # each acked ~1 s after it left ingest: about 1/17 s per character
        p.say("m", f"Line {i:02d} is here.")
        s, _ = p.next_sentence(15)
        time.sleep(1.0)
        p.played(s)
    time.sleep(0.5)
    p.say("m", "Line 99 is here.")  # never acked: re-sent after ~2 x 1 s, not after the 30 s prior
    first, t0 = p.next_sentence(15)
    again, t1 = p.next_sentence(15)
    assert (again.seq, again.attempt, first.attempt) == (first.seq, 1, 0)
    delay = t1 - t0  # a re-send after seconds (measured), not the 30 s prior
    assert delay > 1.5 and delay < 8.0, delay
    p.played(again)
    time.sleep(0.5)  # taken before the restart (else the new ingest re-sends it: right, but not this test)
    # A restarted ingest seeds the estimate from its journal: still seconds, not the prior.
    p.proc.terminate()
    p.proc.wait(10)
    p.start()
    p.say("m", "Line 77 is here.")
    fresh, t0 = p.next_sentence(15)
    retry, t1 = p.next_sentence(15)
    assert (retry.seq, retry.attempt) == (fresh.seq, 1)
    delay = t1 - t0  # a re-send after seconds (measured), not the 30 s prior
    assert delay > 1.5 and delay < 8.0, delay


def test_a_failed_attempt_is_sent_again_at_once_and_an_older_one_is_ignored(bus_env: BusEnv) -> None:
    bus_env.set_sections(ingest={"deadline_base_s": 60.0, "max_attempts": 3})
    p = Pipeline(bus_env)
    p.say("f", "This one fails twice.")
    s0, _ = p.next_sentence(15)
    p.failed(s0, attempt=0)  # e.g. synthesize died mid-sentence and playback gave up on it
    s1, _ = p.next_sentence(5)
    assert (s1.seq, s1.attempt) == (s0.seq, 1)
    p.failed(s0, attempt=0)  # a late failure of the old attempt: attempt 1 is still out
    assert not p.sentences.poll(1500)
    p.failed(s1, attempt=1)
    s2, _ = p.next_sentence(5)
    assert s2.attempt == 2
    p.failed(s2, attempt=2)  # max_attempts reached: failed for good, never sent again
    assert not p.sentences.poll(1500)
    j = Journal(bus_env.data_dir / "journal.sqlite3")
    assert j.counts() == {"failed": 1}


def test_a_cancelled_sentence_is_marked_done_and_never_sent_again(bus_env: BusEnv) -> None:
    bus_env.set_sections(ingest={"deadline_base_s": 1.0, "deadline_per_char_s": 0.0, "deadline_min_s": 1.0})
    p = Pipeline(bus_env)
    p.say("c", "This one is cancelled. This one is not.")
    first, _ = p.next_sentence(15)
    second, _ = p.next_sentence(15)
    p.played(second)
    with Publisher(bus_env.config, wait_s=15) as pub:
        pub.control(Cancel(stream="c", reason="test: a new turn"))
    time.sleep(0.5)
    # Its deadline (1 s) passes several times over: a re-send would have come by now.
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        if p.sentences.poll(200):
            again = decode(p.sentences.recv_multipart())
            raise AssertionError(f"re-sent after the cancel: {again}")
    j = Journal(bus_env.data_dir / "journal.sqlite3")
    assert j.counts() == {"played": 1, "cancelled": 1}, (j.counts(), first.seq)


def control_sub(env: BusEnv) -> zmq.Socket:
    sock = env.config.endpoints.connect_socket(zmq.Context.instance(), "control")
    time.sleep(0.3)  # the subscription reaches ingest's PUB
    return sock


def next_control(sock: zmq.Socket, kind: type, timeout_s: float) -> object:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if sock.poll(100):
            msg = decode(sock.recv_multipart())
            if isinstance(msg, kind):
                return msg
    raise AssertionError(f"no {kind.__name__} on the control channel")


def test_a_sentence_failed_max_attempts_times_is_given_up_once_and_the_stream_goes_on(
    bus_env: BusEnv,
) -> None:
    bus_env.set_sections(ingest={"deadline_base_s": 60.0, "max_attempts": 2})
    p = Pipeline(bus_env)
    control = control_sub(bus_env)
    p.say("p", "The poisoned one. The next one.")
    s0, _ = p.next_sentence(15)
    s1, _ = p.next_sentence(15)
    p.failed(s0, attempt=0)  # e.g. the voice engine rejects it
    assert isinstance(next_control(control, Resent, 5), Resent)
    again, _ = p.next_sentence(5)
    assert (again.seq, again.attempt) == (s0.seq, 1)
    p.failed(again, attempt=1)  # and again: max_attempts reached
    gone = next_control(control, GivenUp, 5)
    assert (
        isinstance(gone, GivenUp)
        and (gone.stream, gone.seq) == ("p", s0.seq)
        and "failed 2 times" in gone.reason
    )
    assert not p.sentences.poll(1000)  # never sent again
    p.played(s1)
    time.sleep(0.5)
    j = Journal(bus_env.data_dir / "journal.sqlite3")
    assert j.counts() == {"failed": 1, "played": 1}


def test_the_next_sentence_of_a_stream_is_given_up_after_give_up_s_and_not_before(bus_env: BusEnv) -> None:
    """Re-sent at its deadline while it may still come (not counted: nothing failed it), given up
    once it has been its stream's next one for give_up_s; what queues behind it never times out."""
    bus_env.set_sections(
        ingest={"deadline_base_s": 1.0, "deadline_per_char_s": 0.0, "deadline_min_s": 1.0, "max_attempts": 2},
        give_up_s=4.0,
    )
    p = Pipeline(bus_env)
    control = control_sub(bus_env)
    t0 = time.monotonic()
    p.say("h", "Never played. Behind it one. Behind it two.")
    got = [p.next_sentence(15)[0] for _ in range(3)]
    resends = []
    while True:  # only the head comes again, more often than max_attempts: re-sends are not failures
        s, _ = p.next_sentence(10)
        if s.seq != got[0].seq:
            raise AssertionError(f"a sentence behind the head was re-sent: {s}")
        resends.append(s.attempt)
        if len(resends) >= 3:
            break
    gone = next_control(control, GivenUp, 10)
    took = time.monotonic() - t0
    assert isinstance(gone, GivenUp) and gone.seq == got[0].seq and "give_up_s" in gone.reason
    assert 3.5 <= took <= 9.0, took
    assert resends == sorted(resends) and resends[0] >= 1
    # the next one is the head now: its own clock starts (re-sent after ~1 s, not given up at once)
    s, _ = p.next_sentence(5)
    assert s.seq == got[1].seq and s.attempt >= 1
    for q in got[1:]:
        p.played(q)
    time.sleep(0.5)
    assert Journal(bus_env.data_dir / "journal.sqlite3").counts() == {"failed": 1, "played": 2}
