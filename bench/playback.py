"""Playback through a real audio stack: 100 sentences of synthetic speech-like audio, streamed in
chunks at a synthesizer's pace to the real playback node, which plays them through sounddevice →
PortAudio → ALSA → a private PulseAudio null sink (real time; notes/audio-path.md).

Sentences come in turns of 1-4 (back to back, as an agent's paragraph), with a pause between
turns. Reported:
  underruns        the node's count of a sentence's buffer running dry, plus the device's underflows
  start latency    a turn's first chunk arriving at playback -> its first sample at the DAC (the
                   stream's callback time info), p50/p95; the very first sentence (stream opening) apart
  ack delay        last sample at the DAC -> the played ack sent (playback's stamp on it)
  CPU              the playback process's user+system CPU seconds per second of audio played

    .venv/bin/python bench/playback.py [--sentences 100] [--out bench/results/playback.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bus.messages import Played, decode, encode
from tests.audio_stack import RATE, Pulse, TapLog, chunks_of, have_pulse, speechlike
from tests.conftest import BusEnv

RTF = 0.5  # the synthetic synthesizer makes audio twice as fast as it plays
CHUNK_S = (0.08, 0.25)  # chunk lengths, seconds of audio
SENTENCE_S = (0.5, 1.2)
TURN_GAP_S = (0.3, 0.8)


class _Env(BusEnv):
    def __init__(self, root: Path, extra: dict[str, str]) -> None:
        super().__init__(root)
        self.extra = extra

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra}


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def run(n_sentences: int, seed: int, latency: str | float) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    root = Path(tempfile.mkdtemp(prefix="bench-playback-"))
    pulse = Pulse(root / "pulse")
    pulse.start()
    env = _Env(root, pulse.env)
    try:
        env.set_sections(playback={"idle_close_s": 5.0, "latency": latency})
        acks = env.config.endpoints.bind_socket(zmq.Context.instance(), "acks")
        env.start("tap-proxy")
        tap = TapLog(env)
        time.sleep(0.3)
        node = env.start("node", "playback")
        tap.wait("ready", timeout=30)
        push = env.config.endpoints.connect_socket(zmq.Context.instance(), "playback")
        cpu0 = cpu_s(node.pid)
        audio_s = 0.0
        first_of_turn: set[int] = set()
        received: dict[int, tuple[int, Played]] = {}
        seq = 0
        t_start = time.monotonic()
        while seq < n_sentences:
            turn = range(seq, min(n_sentences, seq + int(rng.integers(1, 5))))
            first_of_turn.add(turn[0])
            for s in turn:
                pcm = speechlike(float(rng.uniform(*SENTENCE_S)), s)
                audio_s += pcm.size / RATE
                n_chunks = max(1, round(pcm.size / RATE / rng.uniform(*CHUNK_S)))
                for c in chunks_of("bench", s, pcm, n_chunks):
                    push.send_multipart(encode(c))
                    time.sleep(c.duration_s * RTF * rng.uniform(0.5, 1.5))
            while len(received) < turn[-1] + 1:
                assert acks.poll(30_000), "no ack within 30 s"
                msg = decode(acks.recv_multipart())
                assert isinstance(msg, Played), msg
                received[msg.seq] = (time.time_ns(), msg)
            time.sleep(float(rng.uniform(*TURN_GAP_S)))
            seq = turn[-1] + 1
        wall = time.monotonic() - t_start
        cpu = cpu_s(node.pid) - cpu0
        pulse_cpu = cpu_s(pulse.proc.pid) if pulse.proc else float("nan")
        time.sleep(1.2)  # one more heartbeat
        finished = {e.seq: e for e in tap.events if e.node == "playback" and e.kind == "finished"}
        start_lat = [finished[s].detail["first_chunk_latency_ms"] for s in sorted(first_of_turn) if s != 0]
        ack_sent = {
            q: next(st.sent_wall_ns for st in m.stamps[::-1] if st.stage == "playback")
            for q, (_, m) in received.items()
        }
        ack_delay = [(ack_sent[q] - m.last_sample_wall_ns) / 1e6 for q, (_, m) in received.items()]
        opened = [e.detail for e in tap.events if e.node == "playback" and e.kind == "stream_open"]
        underruns = [e.detail for e in tap.events if e.node == "playback" and e.kind == "underrun"]
        result = {
            "sentences": n_sentences,
            "played": len(received),
            "audio_s": round(audio_s, 2),
            "wall_s": round(wall, 2),
            "underruns_starved": sum(1 for u in underruns if u.get("cause") == "starved"),
            "underruns_device": sum(int(u.get("count", 0)) for u in underruns if u.get("cause") == "device"),
            "turns": len(first_of_turn),
            "start_latency_ms_p50": round(pct(start_lat, 50), 1),
            "start_latency_ms_p95": round(pct(start_lat, 95), 1),
            "start_latency_ms_max": round(max(start_lat), 1) if start_lat else None,
            "cold_start_latency_ms": finished[0].detail["first_chunk_latency_ms"] if 0 in finished else None,
            "ack_delay_ms_p50": round(pct(ack_delay, 50), 1),
            "ack_delay_ms_p95": round(pct(ack_delay, 95), 1),
            "ack_before_last_sample": sum(1 for d in ack_delay if d < 0),
            "cpu_s_per_audio_s": round(cpu / audio_s, 4),
            "pulseaudio_cpu_s_total": round(pulse_cpu, 2),
            "stream_opens": len(opened),
            "device_latency_ms": round(opened[0]["latency_s"] * 1000, 1) if opened else None,
            "stack": "sounddevice > PortAudio ALSA > pulse plugin > PulseAudio null sink (f32, 24 kHz)",
            "host": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
            "median_chunk_latency_ms": statistics.median(
                [x for e in finished.values() for x in e.detail.get("chunk_latency_ms", [])] or [0.0]
            ),
        }
        tap.close()
        return result
    finally:
        env.stop_all()
        pulse.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency", default="high", help='[playback] latency: "high", "low" or seconds')
    parser.add_argument("--out", type=Path, default=Path("bench/results/playback.json"))
    args = parser.parse_args()
    if not have_pulse():
        print("E bench: pulseaudio/pulseaudio-utils are not installed (make setup)", file=sys.stderr)
        return 2
    latency = args.latency if args.latency in ("high", "low") else float(args.latency)
    r = run(args.sentences, args.seed, latency)
    r["latency_setting"] = latency
    rows = [
        (
            "sentences played",
            f"{r['played']} / {r['sentences']} ({r['audio_s']} s of audio in {r['wall_s']} s)",
        ),
        ("underruns (starved / device)", f"{r['underruns_starved']} / {r['underruns_device']}"),
        (
            "start latency p50 / p95 / max",
            f"{r['start_latency_ms_p50']} / {r['start_latency_ms_p95']} / "
            f"{r['start_latency_ms_max']} ms  ({r['turns'] - 1} turns)",
        ),
        ("cold start (stream opening)", f"{r['cold_start_latency_ms']} ms"),
        ("device latency (reported)", f"{r['device_latency_ms']} ms"),
        (
            "ack sent p50 / p95",
            f"{r['ack_delay_ms_p50']} / {r['ack_delay_ms_p95']} ms after the last sample",
        ),
        ("CPU per second of audio", f"{r['cpu_s_per_audio_s'] * 1000:.1f} ms (playback process)"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
