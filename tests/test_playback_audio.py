"""Playback through real audio stacks: the playback node runs as its own process, plays through
sounddevice → PortAudio → ALSA (file plugin, or PulseAudio's null sink), and the test reads back what
came out of the device. See tests/audio_stack.py and notes/audio-path.md."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import zmq

from bus.client import Publisher
from bus.messages import Cancel, ControlMessage, Failed, Message, Pause, Played, Resume, decode, encode
from nodes.playback.player import cue_tone, edge_fades
from tests.audio_stack import (
    RATE,
    AudioBusEnv,
    Pulse,
    Recorder,
    TapLog,
    chunks_of,
    find_exact,
    have_pulse,
    iter_blocks,
    no_device_env,
    push_socket,
    send,
    speechlike,
)
from tests.conftest import REPO, wait_for

FADE_N = round(4.0 * RATE / 1000)  # the default fade_ms at 24 kHz
INT16_TOL = 1.5 / 32768


def acks_socket(env: AudioBusEnv) -> zmq.Socket:
    return env.config.endpoints.bind_socket(zmq.Context.instance(), "acks")


def recv_acks(sock: zmq.Socket, n: int, timeout_s: float = 20.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n:
        left = int((deadline - time.monotonic()) * 1000)
        assert left > 0 and sock.poll(left), f"only {len(got)} of {n} acks came"
        got.append(decode(sock.recv_multipart()))
    return got


class Control:
    """Stands in for ingest's control PUB, waiting until playback's SUB has joined."""

    def __init__(self, env: AudioBusEnv, tap: TapLog) -> None:
        self.sock = env.config.endpoints.bind_socket(zmq.Context.instance(), "control")
        self.tap = tap

    def send(self, msg: ControlMessage, ack_kind: str) -> None:
        seen = len([e for e in self.tap.events if e.kind == ack_kind])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # PUB drops until the subscription arrives: repeat
            self.sock.send_multipart(encode(msg))
            if wait_for(lambda: len([e for e in self.tap.events if e.kind == ack_kind]) > seen, 0.3):
                return
        raise AssertionError(f"playback never took {msg}")

    def close(self) -> None:
        self.sock.close(linger=0)


def start(env: AudioBusEnv, give_up_s: float | None = None, **playback: object) -> TapLog:
    env.set_sections(playback=playback, **({} if give_up_s is None else {"give_up_s": give_up_s}))
    env.start("tap-proxy")
    assert wait_for(lambda: "I tap: proxy" in env.log("tap-proxy"), 30), "the tap proxy did not start"
    tap = TapLog(env)
    time.sleep(0.5)  # the tap subscription reaches the proxy before any event we wait for is sent
    env.start("node", "playback")
    tap.wait("heartbeat", timeout=30, state="ready")  # heartbeats repeat: none can be missed for good
    return tap


@pytest.fixture
def pulse(tmp_path: Path) -> Iterator[Pulse]:
    if not have_pulse():
        pytest.skip("pulseaudio / pulseaudio-utils not installed (make setup installs them)")
    p = Pulse(tmp_path / "pulse")
    p.start()
    yield p
    p.stop()


def read_out(path: Path) -> np.ndarray:
    audio, rate = sf.read(str(path), dtype="float32")
    assert rate == RATE
    return audio


# ---- ALSA file plugin: exact samples --------------------------------------------------------------
def test_device_path_plays_exactly_the_samples_sent_and_acks_after(
    file_env: tuple[AudioBusEnv, Path],
) -> None:
    env, out = file_env
    acks = acks_socket(env)
    # The file plugin is not paced: a sentence must be whole before it starts, or it starves at once.
    tap = start(env, idle_close_s=0.3, jitter_ms=5000)
    sink = tap.wait("sink")[0]
    assert sink.detail["sink"] == "device"
    push = push_socket(env)
    a, b = speechlike(0.7, 1), speechlike(0.5, 2)
    ca, cb = chunks_of("s", 0, a, 5), chunks_of("s", 1, b, 4)
    send(push, [ca[1], ca[0], ca[3], ca[2], ca[4], *cb])  # chunks out of order on the wire
    got = recv_acks(acks, 2)
    assert all(isinstance(m, Played) for m in got)
    assert [(m.seq, m.samples, m.wav_path) for m in got] == [(0, a.size, ""), (1, b.size, "")]  # type: ignore[attr-defined]
    for m in got:  # first and last sample times span the sentence
        assert m.last_sample_wall_ns - m.first_sample_wall_ns > 0  # type: ignore[attr-defined]
    tap.wait("stream_closed")  # the file plugin fixes the WAV header on close
    opened = tap.wait("stream_open")[0].detail
    assert opened["rate_hz"] == RATE and opened["latency_s"] > 0
    rec = read_out(out)
    at_a = find_exact(rec, edge_fades(a, FADE_N), tol=INT16_TOL)
    at_b = find_exact(rec, edge_fades(b, FADE_N), start=max(at_a, 0), tol=INT16_TOL)
    assert at_a >= 0 and at_b > at_a + a.size - 1, "a sentence is missing, changed, or out of order"
    assert np.all(rec[:at_a] == 0)  # silence before; nothing else was played
    records = [json.loads(line) for line in (env.data_dir / "played.jsonl").read_text().splitlines()]
    assert [(r["seq"], r["wav"], r["samples"], r["rate_hz"]) for r in records] == [
        (0, "", a.size, RATE),
        (1, "", b.size, RATE),
    ]
    assert set(records[0]) >= {
        "stream",
        "attempt",
        "text_en",
        "text_ja",
        "first_sample_wall_ns",
        "last_sample_wall_ns",
        "stamps",
    }
    assert "underrun" not in tap.kinds()
    tap.close()


def _order_in(rec: np.ndarray, sentences: dict[str, np.ndarray]) -> list[str]:
    at = {}
    for name, pcm in sentences.items():
        pos = find_exact(rec, edge_fades(pcm, FADE_N), tol=INT16_TOL)
        assert pos >= 0, f"{name} is not in the output"
        at[name] = pos
    order = sorted(at, key=at.__getitem__)
    for x, y in itertools.pairwise(order):  # one voice at a time: no overlap
        assert at[x] + sentences[x].size <= at[y]
    return order


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("finish-turn", ["A0", "A1", "A2", "B0", "B1"]),
        ("round-robin", ["A0", "B0", "A1", "B1", "A2"]),
    ],
)
def test_streams_never_overlap_and_take_turns_by_policy(
    file_env: tuple[AudioBusEnv, Path], policy: str, expected: list[str]
) -> None:
    env, out = file_env
    acks = acks_socket(env)
    tap = start(env, idle_close_s=0.3, jitter_ms=5000, policy=policy, turn_hold_s=0.1, cue="tone")
    control = Control(env, tap)
    control.send(Pause(), "paused")  # hold everything until it has all arrived: the order is the policy's
    push = push_socket(env)
    pcm = {
        f"{s}{q}": speechlike(0.3, 10 * i + q)
        for i, s in enumerate("AB")
        for q in range(3 if s == "A" else 2)
    }
    parts = {name: chunks_of(name[0], int(name[1]), x, 3) for name, x in pcm.items()}
    # Arrival: A0, B1 before B0, A2 before A1 (seq order within a stream is playback's job), chunks shuffled.
    wire = [*parts["A0"], *parts["B1"][::-1], *parts["A2"], *parts["B0"], parts["A1"][2], *parts["A1"][:2]]
    send(push, wire)
    assert wait_for(lambda: tap.heartbeat_count("received") >= len(wire) + 1, 10)
    control.send(Resume(), "resumed")
    got = recv_acks(acks, 5)
    assert all(isinstance(m, Played) for m in got)
    tap.wait("stream_closed")
    rec = read_out(out)
    assert _order_in(rec, pcm) == expected
    assert [f"{m.stream}{m.seq}" for m in got] == expected  # type: ignore[attr-defined]
    # The cue sounds where the speaking stream changes, and only there.
    cue = cue_tone(RATE)
    n_cues = sum(1 for a, b in itertools.pairwise(expected) if a[0] != b[0])
    found, at = 0, 0
    while (pos := find_exact(rec, cue, start=at, tol=INT16_TOL)) >= 0:
        found, at = found + 1, pos + cue.size
    assert found == n_cues
    control.close()
    tap.close()


def test_volume_cli_scales_the_output(file_env: tuple[AudioBusEnv, Path]) -> None:
    env, out = file_env
    tap = start(env, idle_close_s=0.3, jitter_ms=5000)
    env.start("node", "ingest")  # it owns the acks endpoint: played acks go to it
    tap.wait("ready", node="ingest")
    for _ in range(3):  # control is PUB/SUB: playback's SUB joins ingest's PUB within its reconnect interval
        cli = subprocess.run(
            [sys.executable, "-m", "stream_tts.cli", "volume", "50"],
            env=env.env(),
            cwd=REPO,
            capture_output=True,
            timeout=30,
        )
        assert cli.returncode == 0, cli.stderr
        if wait_for(lambda: "volume" in tap.kinds(), 3):
            break
    assert tap.wait("volume")[0].detail["level"] == 0.5
    x = speechlike(0.4, 7)
    send(push_socket(env), chunks_of("v", 0, x, 2))
    tap.wait("finished")
    tap.wait("stream_closed")
    rec = read_out(out)
    assert find_exact(rec, 0.5 * edge_fades(x, FADE_N), tol=INT16_TOL) >= 0
    assert find_exact(rec, edge_fades(x, FADE_N), tol=INT16_TOL) < 0
    bad = subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", "volume", "loud"],
        env=env.env(),
        cwd=REPO,
        capture_output=True,
        timeout=30,
    )
    assert bad.returncode == 2 and b"percentage" in bad.stderr
    tap.close()


def test_a_device_that_cannot_take_the_rate_gets_resampled_audio(file_env: tuple[AudioBusEnv, Path]) -> None:
    import soxr

    env, out = file_env
    acks = acks_socket(env)
    tap = start(env, idle_close_s=0.3, jitter_ms=5000, rate_hz=48000)
    x = speechlike(0.5, 3)
    send(push_socket(env), chunks_of("r", 0, x, 4))
    played = recv_acks(acks, 1)[0]
    assert isinstance(played, Played) and played.rate_hz == RATE and played.samples == x.size
    assert tap.wait("stream_open")[0].detail["resampled_from"] == RATE
    tap.wait("stream_closed")
    audio, rate = sf.read(str(out), dtype="float32")
    assert rate == 48000
    want = soxr.resample(x, RATE, 48000, quality="HQ").astype(np.float32)
    rough = int(np.nonzero(np.abs(audio) > 1e-3)[0][0])
    body = slice(200, want.size - 200)  # away from the edge fades
    lag = max(range(-64, 65), key=lambda k: float(np.dot(audio[rough + k :][body], want[body])))
    got = audio[rough + lag : rough + lag + want.size]
    assert got.size == want.size
    assert np.max(np.abs(got[body] - want[body])) < 0.01
    assert np.corrcoef(got[body], want[body])[0, 1] > 0.9999
    tap.close()


def test_with_no_device_auto_says_so_once_and_writes_wavs(tmp_path: Path) -> None:
    env = AudioBusEnv(tmp_path, no_device_env(tmp_path / "nodev"))
    try:
        acks = acks_socket(env)
        t0 = time.time_ns()
        tap = start(env)
        x = speechlike(0.3, 5)
        for seq in range(2):
            send(push_socket(env), chunks_of("w", seq, x, 2))
        got = recv_acks(acks, 2)
        for m in got:
            assert isinstance(m, Played) and m.wav_path
            audio, rate = sf.read(m.wav_path, dtype="float32")
            assert rate == RATE and np.max(np.abs(audio - x)) <= INT16_TOL
        no_dev = tap.wait("no_audio_device")
        assert len(no_dev) == 1 and "not available" in no_dev[0].detail["reason"]
        assert no_dev[0].wall_ns - t0 < 10e9  # process start included: the probe itself takes ~60 ms
        assert env.log("node-playback").count("no usable audio device") == 1
    finally:
        env.stop_all()


# ---- PulseAudio null sink: real time ----------------------------------------------------------------
@pytest.fixture
def pulse_env(tmp_path: Path, pulse: Pulse) -> Iterator[tuple[AudioBusEnv, Pulse]]:
    env = AudioBusEnv(tmp_path, pulse.env)
    yield env, pulse
    env.stop_all()


def via_ingest(env: AudioBusEnv, tap: TapLog, msg: ControlMessage, kind: str) -> int:
    """Send a control message as `stream-tts` does (Publisher → ingest → control channel); repeat until
    playback's SUB has joined ingest's PUB. Returns the wall ns it was last sent at."""
    before = len([e for e in tap.events if e.kind == kind])
    with Publisher(env.config, wait_s=10) as pub:
        for _ in range(20):
            sent = time.time_ns()
            pub.control(msg)
            if wait_for(lambda: len([e for e in tap.events if e.kind == kind]) > before, 0.5):
                return sent
    raise AssertionError(f"{msg} never reached playback")


def blocks_at(rec: np.ndarray, want: np.ndarray, start: int = 0) -> list[int]:
    """Where each 240-sample block of `want` (bit-exact) sits in rec, searching from start; -1 if absent."""
    out, at = [], start
    for _, block in iter_blocks(want):
        pos = find_exact(rec, block, start=at)
        out.append(pos)
        if pos >= 0:
            at = pos
    return out


@pytest.mark.slow
def test_realtime_every_block_of_every_sentence_in_order_without_gaps(
    pulse_env: tuple[AudioBusEnv, Pulse],
) -> None:
    env, pulse = pulse_env
    acks = acks_socket(env)
    rec = Recorder(pulse)
    tap = start(env, idle_close_s=2.0)
    push = push_socket(env)
    sentences = [("a", 0, speechlike(0.8, 21)), ("b", 0, speechlike(0.6, 22)), ("a", 1, speechlike(0.7, 23))]
    t0 = time.monotonic()
    for stream, seq, pcm in sentences:  # streamed as a synthesizer would: 100 ms of audio every 50 ms
        for c in chunks_of(stream, seq, pcm, max(1, int(pcm.size / 2400))):
            send(push, [c])
            time.sleep(0.05)
    got = recv_acks(acks, 3, timeout_s=30)
    elapsed = time.monotonic() - t0
    time.sleep(0.3)
    rec.stop()
    total = sum(p.size for _, _, p in sentences) / RATE
    assert elapsed >= total - 0.1, f"{total:.2f} s of audio acked after {elapsed:.2f} s: not paced"
    assert all(isinstance(m, Played) for m in got)
    assert [(m.stream, m.seq) for m in got] == [("a", 0), ("a", 1), ("b", 0)]  # type: ignore[attr-defined]
    audio = rec.samples()
    at = 0
    for stream, seq, pcm in [sentences[0], sentences[2], sentences[1]]:
        want = edge_fades(pcm, FADE_N)
        where = blocks_at(audio, want, at)
        assert -1 not in where, f"{stream}{seq}: blocks {[i for i, w in enumerate(where) if w < 0]} missing"
        assert np.all(np.diff(where) == 240), f"{stream}{seq}: a gap or a jump inside the sentence"
        at = where[-1] + 240
    ack_ns = {(m.stream, m.seq): m for m in got}  # type: ignore[attr-defined]
    for stream, seq, pcm in sentences:  # the ack's sample times span the sentence's duration
        m = ack_ns[(stream, seq)]
        span = (m.last_sample_wall_ns - m.first_sample_wall_ns) / 1e9  # type: ignore[attr-defined]
        assert abs(span - pcm.size / RATE) < 0.05
    assert "underrun" not in tap.kinds()
    tap.close()


@pytest.mark.slow
def test_stop_goes_quiet_within_100_ms_and_drops_the_queue(pulse_env: tuple[AudioBusEnv, Pulse]) -> None:
    env, pulse = pulse_env
    rec = Recorder(pulse)
    tap = start(env, idle_close_s=5.0)
    env.start("node", "ingest")
    tap.wait("ready", node="ingest")
    via_ingest(env, tap, Resume(), "resumed")  # the control channel is up
    push = push_socket(env)
    long, queued = speechlike(3.0, 31), speechlike(1.0, 32)
    send(push, chunks_of("s", 0, long, 10) + chunks_of("s", 1, queued, 3))
    tap.wait("started", timeout=10)
    time.sleep(0.8)
    with Publisher(env.config, wait_s=10) as pub:
        t_cancel = time.time_ns()
        pub.control(Cancel(reason="test"))
    tap.wait("cancelled")
    time.sleep(1.0)
    rec.stop()
    audio = rec.samples()
    want = edge_fades(long, FADE_N)
    onset = find_exact(audio, want[:2400])
    assert onset >= 0
    sounding = np.nonzero(np.abs(audio[onset:]) > 0)[0]
    played = int(sounding[-1]) + 1
    assert 0.5 * RATE < played < long.size, "it did not stop"
    # Upper bound on when the last sample left: the recorder read the onset no earlier than it played.
    stop_after_s = (rec.wall_of_sample(onset) + played / RATE * 1e9 - t_cancel) / 1e9
    print(f"stop: last sample out <= {stop_after_s * 1000:.0f} ms after the cancel was sent")
    assert stop_after_s <= 0.1, f"stopped {stop_after_s * 1000:.0f} ms after the cancel"
    assert find_exact(audio, edge_fades(queued, FADE_N)[:2400]) < 0, "the queued sentence still played"
    assert not [e for e in tap.events if e.kind == "finished" and e.node == "playback"]
    tap.close()


@pytest.mark.slow
def test_pause_holds_the_sentence_and_resume_goes_on_where_it_was(
    pulse_env: tuple[AudioBusEnv, Pulse],
) -> None:
    env, pulse = pulse_env
    rec = Recorder(pulse)
    tap = start(env, idle_close_s=5.0)
    env.start("node", "ingest")
    tap.wait("ready", node="ingest")
    via_ingest(env, tap, Resume(), "resumed")
    x = speechlike(2.0, 41)
    send(push_socket(env), chunks_of("p", 0, x, 8))
    tap.wait("started", timeout=10)
    time.sleep(0.5)
    for verb, kind in (("pause", "paused"), ("resume", "resumed")):
        n = len([e for e in tap.events if e.kind == kind])
        cli = subprocess.run(
            [sys.executable, "-m", "stream_tts.cli", verb], env=env.env(), cwd=REPO, timeout=30
        )
        assert cli.returncode == 0
        tap.wait(kind, n=n + 1)
        if verb == "pause":
            time.sleep(1.0)
    tap.wait("finished", timeout=10)
    time.sleep(0.3)
    rec.stop()
    audio = rec.samples()
    where = blocks_at(audio, edge_fades(x, FADE_N))
    missing = [i for i, w in enumerate(where) if w < 0]
    assert len(missing) <= 2, f"blocks {missing} lost (only the ones under the pause/resume ramps may differ)"
    found = [w for w in where if w >= 0]
    jumps = [int(d) for d in np.diff(found) if d != 240]
    assert len(jumps) == 1, f"expected one pause inside the sentence, got jumps {jumps}"
    assert jumps[0] >= 240 + 0.8 * RATE, "the pause was shorter than it was held"
    tap.close()


@pytest.mark.slow
def test_device_vanishing_mid_sentence_falls_back_to_wav_keeping_the_sentence(
    pulse_env: tuple[AudioBusEnv, Pulse],
) -> None:
    env, pulse = pulse_env
    acks = acks_socket(env)
    tap = start(env, idle_close_s=5.0)
    x = speechlike(2.0, 51)
    send(push_socket(env), chunks_of("d", 0, x, 8))
    tap.wait("started", timeout=10)
    time.sleep(0.5)
    pulse.kill()
    played = recv_acks(acks, 1, timeout_s=20)[0]
    assert isinstance(played, Played) and played.wav_path, played
    audio, rate = sf.read(played.wav_path, dtype="float32")
    assert rate == RATE and audio.size == x.size and np.max(np.abs(audio - x)) <= INT16_TOL
    kinds = tap.kinds()
    assert kinds.index("device_lost") < kinds.index("no_audio_device")
    assert kinds.count("no_audio_device") == 1
    assert not isinstance(played, Failed)
    tap.close()
