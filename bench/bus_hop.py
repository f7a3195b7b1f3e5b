"""What one node-runtime hop costs, against a raw pyzmq PUSH/PULL + msgpack relay, in one run.

Two relays run as their own processes, side by side: `raw` (PULL -> msgpack.unpackb ->
msgpack.packb -> PUSH) and `runtime` (a bus/node.py Node whose handle() passes the message on:
decode with validation, stamps, encode). The driver sends one Sentence-sized header at a time
(ping-pong, so queueing does not hide latency) and times the round trip driver -> relay ->
driver, 10^4 messages each, interleaved in blocks so drift hits both alike. Then it floods each
relay with 24 kHz float32 audio chunks (40 ms each) and reports throughput.

    .venv/bin/python bench/bus_hop.py [--messages 10000] [--out bench/results/bus_hop.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import msgpack
import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ports import free_ports
from bus.config import load_config
from bus.messages import AudioChunk, Message, Sentence, Stamp, decode, encode
from bus.node import Node

BLOCK = 500  # messages per block; blocks alternate between the relays
CHUNK_SAMPLES = 960  # 40 ms at 24 kHz
RATE = 24000


class RelayNode(Node):
    """The runtime relay: everything a real node does per message, and nothing else."""

    name = "relay"
    inputs = ("synthesize",)
    routes: ClassVar[dict[type[Message], str]] = {Sentence: "playback", AudioChunk: "playback"}
    listens_control = False

    def handle(self, msg: Message) -> Any:
        yield msg


def run_raw_relay(pull_addr: str, push_addr: str) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind(pull_addr)
    push.connect(push_addr)
    while True:
        frames = pull.recv_multipart()
        header = msgpack.unpackb(frames[0], raw=False)
        if header.get("type") == "stop":
            return
        push.send_multipart([msgpack.packb(header, use_bin_type=True), *frames[1:]])


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--audio-chunks", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/bus_hop.json"))
    parser.add_argument("--role", choices=["driver", "raw", "runtime"], default="driver")
    parser.add_argument("--pull")
    parser.add_argument("--push")
    parser.add_argument("--config")
    args = parser.parse_args()
    if args.role == "raw":
        run_raw_relay(args.pull, args.push)
        return 0
    if args.role == "runtime":
        return RelayNode(load_config(args.config)).run()

    tmp = Path(tempfile.mkdtemp(prefix="bus-hop-"))
    p = free_ports(12)
    cfg = tmp / "relay.toml"
    endpoints = dict(
        zip(
            ["text", "translate", "synthesize", "playback", "acks", "control", "tap_in", "tap_out"],
            p[:8],
            strict=True,
        )
    )
    cfg.write_text(
        f'data_dir = "{tmp}"\n[endpoints]\n'
        + "".join(f'{k} = "tcp://127.0.0.1:{v}"\n' for k, v in endpoints.items())
    )
    raw_in, raw_out = f"tcp://127.0.0.1:{p[8]}", f"tcp://127.0.0.1:{p[9]}"
    rt_in, rt_out = f"tcp://127.0.0.1:{endpoints['synthesize']}", f"tcp://127.0.0.1:{endpoints['playback']}"
    me = [sys.executable, __file__]
    procs = [
        subprocess.Popen([*me, "--role", "raw", "--pull", raw_in, "--push", raw_out]),
        subprocess.Popen([*me, "--role", "runtime", "--config", str(cfg)], stderr=subprocess.DEVNULL),
    ]
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    lanes: dict[str, tuple[zmq.Socket[bytes], zmq.Socket[bytes]]] = {}
    for name, (to, back) in {"raw": (raw_in, raw_out), "runtime": (rt_in, rt_out)}.items():
        out, inp = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
        inp.bind(back)
        out.connect(to)
        lanes[name] = (out, inp)
    try:
        sentence = Sentence(
            stream="agent-1",
            seq=0,
            text="The build finished and all tests passed.",
            stamps=(Stamp.now("ingest"),),
        )
        # Warm up both lanes (connections, allocators) before timing.
        for out, inp in lanes.values():
            for i in range(200):  # distinct ids: the runtime drops duplicates (bus/freshness.py)
                out.send_multipart(encode(Sentence(stream="warm-up", seq=i, text=sentence.text)))
                if not inp.poll(10_000):
                    raise SystemExit("relay did not answer: is the venv set up?")
                decode(inp.recv_multipart())
        rtt: dict[str, list[float]] = {"raw": [], "runtime": []}
        for block in range(0, args.messages, BLOCK):
            for name, (out, inp) in lanes.items():
                for i in range(block, min(block + BLOCK, args.messages)):
                    msg = Sentence(stream="agent-1", seq=i, text=sentence.text, stamps=sentence.stamps)
                    t_ns = time.perf_counter_ns()
                    # Both lanes pay the same encode/decode here: the runtime's own cost is inside.
                    out.send_multipart(encode(msg))
                    decode(inp.recv_multipart())
                    rtt[name].append((time.perf_counter_ns() - t_ns) / 1000)
        audio: dict[str, float] = {}
        pcm = (0.1 * np.sin(np.arange(CHUNK_SAMPLES) / 5)).astype("<f4").tobytes()
        for name, (out, inp) in lanes.items():
            n = args.audio_chunks
            t0 = time.perf_counter()
            sent = got = 0
            while got < n:
                while sent < n and sent - got < 200:
                    out.send_multipart(
                        encode(AudioChunk(stream="a", seq=0, index=sent, last=False, rate_hz=RATE, pcm=pcm))
                    )
                    sent += 1
                decode(inp.recv_multipart())
                got += 1
            audio[name] = time.perf_counter() - t0
    finally:
        for name, (out, _) in lanes.items():
            if name == "raw":
                out.send_multipart([msgpack.packb({"type": "stop"})])
        procs[1].terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
    res: dict[str, Any] = {
        "host": platform.node(),
        "python": platform.python_version(),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "messages": args.messages,
    }
    audio_s = args.audio_chunks * CHUNK_SAMPLES / RATE
    for name in lanes:
        res[name] = {
            "rtt_p50_us": statistics.median(rtt[name]),
            "rtt_p99_us": _pct(rtt[name], 99),
            "audio_chunks_per_s": args.audio_chunks / audio[name],
            "audio_mb_per_s": args.audio_chunks * len(pcm) / audio[name] / 1e6,
            "audio_realtime_x": audio_s / audio[name],
        }
    res["ratio_p50"] = res["runtime"]["rtt_p50_us"] / res["raw"]["rtt_p50_us"]
    res["ratio_p99"] = res["runtime"]["rtt_p99_us"] / res["raw"]["rtt_p99_us"]
    # the ratio shares the driver's and the wire's cost; what the runtime itself adds, per hop:
    res["added_p50_us"] = res["runtime"]["rtt_p50_us"] - res["raw"]["rtt_p50_us"]
    print(f"bus hop, {args.messages} messages each, round trip driver -> relay -> driver (µs)")
    print(f"{'relay':<9} {'p50':>8} {'p99':>8} {'audio chunks/s':>15} {'MB/s':>7} {'x realtime':>11}")
    for name in lanes:
        r = res[name]
        print(
            f"{name:<9} {r['rtt_p50_us']:>8.1f} {r['rtt_p99_us']:>8.1f} {r['audio_chunks_per_s']:>15.0f} "
            f"{r['audio_mb_per_s']:>7.1f} {r['audio_realtime_x']:>11.0f}"
        )
    print(f"runtime/raw: p50 {res['ratio_p50']:.2f}  p99 {res['ratio_p99']:.2f}  (target p50 <= 1.2)")
    print(f"added by the runtime at p50: {res['added_p50_us']:.1f} µs per hop")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
