"""Ingest speed: sentences per second through segmentation, and how long a sentence waits in ingest
after the delta that closes it arrives (target p99 < 1 ms).

1. throughput: the markdown and stream-json corpus texts (tests/data/ingest), repeated, fed as
   token-sized deltas (1-6 characters) through `SentenceStream` (segmenter + speakable) in-process.
2. compute delay: the time `SentenceStream.feed(closing delta)` takes, per sentence.
3. ingest delay over the bus: a real ingest node process (temp config, free ports, its journal in a
   temp dir); a Publisher sends the deltas as TextIn(final=False); the bench binds translate's PULL.
   Per sentence: ingest's own stamp (received the closing TextIn -> sent the Sentence: journal
   write included) and publisher-send -> PULL-receive (two socket hops added). Deltas that close a
   sentence are sent ping-pong (the next waits for the sentence), so queueing does not hide latency.

    .venv/bin/python bench/ingest.py [--sentences 2000] [--out bench/results/ingest.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ports import free_ports
from bus.client import Publisher
from bus.config import load_config
from bus.endpoints import LAYOUT
from bus.messages import Sentence, decode
from nodes.ingest.text.speakable import SentenceStream
from stream_tts.claude.stream_json import StreamJsonReader, read_lines, says

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "ingest"


def corpus_text() -> str:
    parts = [p.read_text(encoding="utf-8") for p in sorted(DATA.glob("*.md"))]
    for path in sorted(DATA.glob("*.jsonl")):
        with path.open("rb") as f:
            parts += [s.text for s in says(read_lines(f), StreamJsonReader()) if s.text]
    return "\n\n".join(parts) + "\n\n"


def deltas(text: str, rng: random.Random) -> list[str]:
    out, i = [], 0
    while i < len(text):
        n = rng.randint(1, 6)
        out.append(text[i : i + n])
        i += n
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": pct(values, 0.5), "p99": pct(values, 0.99), "max": max(values), "n": len(values)}


def throughput(pieces: list[str]) -> dict[str, float]:
    stream = SentenceStream(idle_flush_s=None)
    t0 = time.perf_counter()
    n = 0
    for p in pieces:
        n += len(stream.feed(p))
    n += len(stream.flush())
    took = time.perf_counter() - t0
    chars = sum(map(len, pieces))
    return {"sentences": n, "seconds": took, "sentences_per_s": n / took, "chars_per_s": chars / took}


def compute_delay(pieces: list[str]) -> list[float]:
    stream = SentenceStream(idle_flush_s=None)
    delays = []
    for p in pieces:
        t0 = time.perf_counter_ns()
        out = stream.feed(p)
        took = time.perf_counter_ns() - t0
        if out:
            delays.append(took / 1e6)
    return delays


def bus_delay(pieces: list[str], want: int) -> dict[str, list[float]]:
    """Real ingest process: (in-ingest ms from its stamps, publisher send -> PULL receive ms)."""
    closing = []  # how many sentences each delta completes, from the same code ingest runs
    probe = SentenceStream(idle_flush_s=None)
    for p in pieces:
        closing.append(len(probe.feed(p)))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.toml"
        ports = free_ports(len(LAYOUT))
        endpoints = "\n".join(f'{n} = "tcp://127.0.0.1:{p}"' for n, p in zip(LAYOUT, ports, strict=True))
        cfg.write_text(f'data_dir = "{tmp}/data"\n[endpoints]\n{endpoints}\n[ingest]\nidle_flush_s = 60.0\n')
        config = load_config(cfg, environ={})
        pull = config.endpoints.bind_socket(zmq.Context.instance(), "translate")
        log = (Path(tmp) / "ingest.log").open("wb")
        node = subprocess.Popen(
            [sys.executable, "-m", "stream_tts.cli", "node", "ingest", "--config", str(cfg)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        in_node: list[float] = []
        hops: list[float] = []
        try:
            with Publisher(config, wait_s=20) as pub:
                for p, k in zip(pieces, closing, strict=True):
                    t_send = time.monotonic_ns()
                    pub.send("bench", p, final=False, source="bench")
                    for _ in range(k):
                        if not pull.poll(10_000):
                            raise RuntimeError("ingest sent nothing for 10 s: see its log " + log.name)
                        t_recv = time.monotonic_ns()
                        msg = decode(pull.recv_multipart())
                        assert isinstance(msg, Sentence)
                        stamp = next(s for s in msg.stamps if s.stage == "ingest")
                        in_node.append(stamp.held_ms)
                        hops.append((t_recv - t_send) / 1e6)
                    if len(in_node) >= want:
                        break
        finally:
            node.terminate()
            node.wait(10)
            pull.close(linger=0)
    return {"in_ingest_ms": in_node, "send_to_receive_ms": hops}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000, help="sentences timed through the real ingest")
    parser.add_argument("--repeat", type=int, default=40, help="corpus repeats for the throughput run")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "ingest.json"))
    args = parser.parse_args()
    rng = random.Random(1)
    text = corpus_text()
    pieces = deltas(text * args.repeat, rng)
    tp = throughput(pieces)
    comp = compute_delay(pieces)
    bus = bus_delay(deltas(text * 200, random.Random(2)), args.sentences)
    rows = [
        ("segment+speakable, in-process", f"{tp['sentences_per_s']:,.0f} sentences/s",
         f"{tp['chars_per_s'] / 1e6:.2f} M chars/s", f"{tp['sentences']} sentences"),
        ("feed(closing delta) compute", f"p50 {pct(comp, 0.5):.3f} ms", f"p99 {pct(comp, 0.99):.3f} ms",
         f"n={len(comp)}"),
        ("in ingest (stamp: recv -> sent)", f"p50 {pct(bus['in_ingest_ms'], 0.5):.3f} ms",
         f"p99 {pct(bus['in_ingest_ms'], 0.99):.3f} ms", f"n={len(bus['in_ingest_ms'])}"),
        ("publisher send -> PULL receive", f"p50 {pct(bus['send_to_receive_ms'], 0.5):.3f} ms",
         f"p99 {pct(bus['send_to_receive_ms'], 0.99):.3f} ms", f"n={len(bus['send_to_receive_ms'])}"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'':<22}  {'':<18}  n")
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:<22}  {r[2]:<18}  {r[3]}")
    result: dict[str, Any] = {
        "throughput": tp,
        "compute_delay_ms": summary(comp),
        "in_ingest_ms": summary(bus["in_ingest_ms"]),
        "send_to_receive_ms": summary(bus["send_to_receive_ms"]),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "command": "python bench/ingest.py " + " ".join(sys.argv[1:]),
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
