"""Sentences at 22 050 Hz (CosyVoice v1) next to sentences at 24 000 Hz (CosyVoice2), as a model
change or a restart on another model folder brings them: the device path resamples each sentence
whose rate is not the open stream's, with its own resampler, and nothing clicks where one rate meets
the other; the WAV sink writes each sentence at its own rate. played.jsonl keeps each one's rate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from bus.messages import AudioChunk, Played
from nodes.playback.player import edge_fades
from tests.audio_stack import AudioBusEnv, find_exact, push_socket, send
from tests.test_playback_audio import acks_socket, recv_acks, start

pytestmark = pytest.mark.timeout(120)
V1_HZ, V2_HZ = 22050, 24000
INT16_TOL = 1.5 / 32768


def tone(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Speech-like float32 at `rate`: a gliding voiced tone with syllable envelopes (no noise, so
    that a jump between two samples can only be a click)."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 150 + 40 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    return (0.25 * voiced * (0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + seed) ** 2)).astype(np.float32)


def chunks(stream: str, seq: int, pcm: np.ndarray, rate: int, n: int = 4) -> list[AudioChunk]:
    return [
        AudioChunk(
            stream=stream,
            seq=seq,
            index=i,
            last=i == n - 1,
            rate_hz=rate,
            pcm=part.astype("<f4").tobytes(),
            text_en=f"{stream} sentence {seq}.",
            text_ja="テスト。",
        )
        for i, part in enumerate(np.array_split(pcm, n))
    ]


def max_step(x: np.ndarray) -> float:
    return float(np.max(np.abs(np.diff(x))))


@pytest.mark.parametrize(
    "rates", [(V2_HZ, V1_HZ, V2_HZ), (V1_HZ, V2_HZ, V1_HZ)], ids=["24k-first", "22k-first"]
)
def test_a_sentence_at_another_rate_is_resampled_on_its_own_and_nothing_clicks_between(
    file_env: tuple[AudioBusEnv, Path], rates: tuple[int, int, int]
) -> None:
    env, out = file_env
    acks = acks_socket(env)
    tap = start(env, idle_close_s=0.3, jitter_ms=5000)  # the file plugin is not paced: whole sentences
    xs = [tone(0.6, rate, seed) for seed, rate in enumerate(rates)]
    for seq, (x, rate) in enumerate(zip(xs, rates, strict=True)):
        send(push_socket(env), chunks("r", seq, x, rate))
    got = recv_acks(acks, 3)
    assert [(m.seq, m.rate_hz, m.samples) for m in got if isinstance(m, Played)] == [
        (seq, rate, x.size) for seq, (x, rate) in enumerate(zip(xs, rates, strict=True))
    ]
    opened = tap.wait("stream_open")[0].detail
    assert opened["rate_hz"] == rates[0] and opened["resampled_from"] == 0  # opened at the first's rate
    tap.wait("stream_closed")
    rec, rate = sf.read(str(out), dtype="float32")
    assert rate == rates[0]
    fade_n = round(4.0 * rate / 1000)
    # the first and last sentences are at the stream's rate: their samples, exactly, in order
    at0 = find_exact(rec, edge_fades(xs[0], fade_n), tol=INT16_TOL)
    at2 = find_exact(rec, edge_fades(xs[2], fade_n), start=max(at0, 0), tol=INT16_TOL)
    assert at0 >= 0 and at2 > at0
    # between them, the other-rate sentence, resampled (soxr HQ) to the stream's rate
    want = soxr.resample(xs[1], rates[1], rate, quality="HQ").astype(np.float32)
    middle = rec[at0 + xs[0].size : at2]
    body = slice(200, want.size - 200)  # away from the edge fades
    lag = max(
        range(0, middle.size - want.size + 1), key=lambda k: float(np.dot(middle[k:][body], want[body]))
    )
    resampled = middle[lag : lag + want.size]
    assert abs(middle.size - want.size) <= 64  # its length at the new rate, no gap, no lost audio
    assert np.corrcoef(resampled[body], want[body])[0, 1] > 0.9999
    # no click: where one sentence meets the next, no jump larger than the voice's own steps
    voice_step = max(max_step(x) for x in (xs[0], want, xs[2]))
    for edge in (at0 + xs[0].size, at2):
        around = rec[edge - 3 * fade_n : edge + 3 * fade_n]
        assert max_step(around) <= voice_step, f"a click at sample {edge}"
        assert abs(float(rec[edge])) < 0.02 and abs(float(rec[edge - 1])) < 0.02  # faded out and in
    records = [json.loads(line) for line in (env.data_dir / "played.jsonl").read_text().splitlines()]
    assert [(r["seq"], r["rate_hz"], r["samples"]) for r in records] == [
        (seq, r_hz, x.size) for seq, (x, r_hz) in enumerate(zip(xs, rates, strict=True))
    ]
    assert "underrun" not in tap.kinds()
    tap.close()


def test_the_wav_sink_writes_each_sentence_at_its_own_rate(tmp_path: Path) -> None:
    from tests.audio_stack import no_device_env

    env = AudioBusEnv(tmp_path, no_device_env(tmp_path / "nodev"))
    try:
        acks = acks_socket(env)
        start(env, sink="wav")
        rates = (V2_HZ, V1_HZ, V2_HZ)
        xs = [tone(0.3, rate, seed) for seed, rate in enumerate(rates)]
        for seq, (x, rate) in enumerate(zip(xs, rates, strict=True)):
            send(push_socket(env), chunks("w", seq, x, rate, n=3))
        got = [m for m in recv_acks(acks, 3) if isinstance(m, Played)]
        assert [m.seq for m in got] == [0, 1, 2]
        for m, x, rate in zip(got, xs, rates, strict=True):
            audio, wav_rate = sf.read(m.wav_path, dtype="float32")
            assert wav_rate == rate == m.rate_hz and audio.size == x.size == m.samples
            assert np.max(np.abs(audio - x)) <= INT16_TOL  # its own samples, not resampled
    finally:
        env.stop_all()
