"""Throw random and mutated frames at every node's input of a running pipeline; every node must
still be running (same pid, no restart) and answering (heartbeats, counters) afterwards.

    .venv/bin/stream-tts up --tiny
    .venv/bin/python bench/fuzz_nodes.py [--frames 100000] [--seconds 60] [--config F]

Frames that happen to decode as a valid message are not sent (they would be real work, not
fuzz), so each node's `dropped` counter must grow by exactly the number sent to it. Prints a
table, writes JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bus.config import Config, load_config
from bus.messages import (
    AudioChunk,
    BadMessage,
    Clause,
    Played,
    Sentence,
    TextIn,
    decode,
    encode,
    message_types,
)
from bus.tap import events, subscribe

TARGETS = [
    ("ingest", "text"),
    ("ingest", "acks"),
    ("translate", "translate"),
    ("synthesize", "synthesize"),
    ("playback", "playback"),
]
VALID = [
    TextIn(stream="f", text="hello"),
    Sentence(stream="f", seq=1, text="Hello there."),
    Clause(stream="f", seq=1, index=0, text="こんにちは。", last=True),
    AudioChunk(stream="f", seq=1, index=0, last=True, rate_hz=24000, pcm=b"\0" * 64),
    Played(stream="f", seq=1, samples=1, rate_hz=24000, first_sample_wall_ns=1, last_sample_wall_ns=2),
]


def garbage(rng: random.Random) -> list[bytes]:
    """One random or mutated multipart message (may by chance be valid: the caller checks)."""
    kind = rng.randrange(8)
    if kind == 0:
        return [rng.randbytes(rng.randint(0, 300))]
    if kind == 1:
        return [rng.randbytes(rng.randint(0, 40)) for _ in range(rng.randint(2, 5))]
    if kind == 2:  # a header of a known type with wrong-typed or missing fields
        kinds = sorted(message_types())
        junk: list[Any] = [None, -1, 2**70 % 2**64, "x", b"\xff", [], {}, 1.5, True]
        fields: dict[str, Any] = {
            k: rng.choice(junk)
            for k in rng.sample(["stream", "seq", "text", "index", "last", "rate_hz", "attempt", "pcm"], 3)
        }
        return [msgpack.packb({"v": 1, "type": rng.choice(kinds), **fields})]
    if kind == 3:  # an unknown version or type
        return [msgpack.packb({"v": rng.randint(2, 2**31), "type": rng.choice(["sentence", "zzz", ""])})]
    frames = encode(rng.choice(VALID))
    if kind == 4:  # flip bytes of a valid header
        header = bytearray(frames[0])
        for _ in range(rng.randint(1, 4)):
            header[rng.randrange(len(header))] = rng.randrange(256)
        return [bytes(header), *frames[1:]]
    if kind == 5:  # truncate
        return [frames[0][: rng.randrange(len(frames[0]))], *frames[1:]]
    if kind == 6:  # payload that does not fit the header (or is not wanted)
        return [frames[0], rng.randbytes(rng.choice([1, 3, 5, 7]))]
    return [b"\xa3\xff\xfe\xfd"]  # a msgpack string that is not UTF-8


def _is_bad(frames: list[bytes]) -> bool:
    try:
        decode(frames)
        return False
    except BadMessage:
        return True


def _states(config: Config, seconds: float = 2.5) -> dict[str, dict[str, Any]]:
    tap = subscribe(config)
    try:
        out: dict[str, dict[str, Any]] = {}
        for ev in events(tap, seconds):
            if ev.kind == "heartbeat":
                out[ev.node] = dict(ev.detail)
        return out
    finally:
        tap.close(linger=0)


def _sender(config: Config, endpoint: str) -> zmq.Socket[bytes]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    if endpoint == "text":  # ingest's SUB: send after its subscription arrived
        sock = ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.XPUB_NODROP, 1)
        sock.connect(config.endpoints.connect["text"])
        if not sock.poll(5000):
            raise SystemExit("no ingest subscription: is the pipeline up?")
        sock.recv()
        return sock
    return config.endpoints.connect_socket(ctx, endpoint)


def fuzz(config: Config, frames: int, seconds: float, seed: int = 0) -> dict[str, Any]:
    before = _states(config)
    missing = [n for n, _ in TARGETS if n not in before]
    if missing:
        raise SystemExit(f"no heartbeat from {missing}: start the pipeline first (stream-tts up --tiny)")
    rng = random.Random(seed)
    sent: dict[str, int] = {}
    t_all = time.monotonic()
    for node, endpoint in TARGETS:
        sock = _sender(config, endpoint)
        n, deadline = 0, time.monotonic() + seconds / len(TARGETS)
        while n < frames and time.monotonic() < deadline:
            msg = garbage(rng)
            if _is_bad(msg):
                sock.send_multipart(msg)
                n += 1
        sent[f"{node}:{endpoint}"] = n
        sock.setsockopt(zmq.LINGER, 5000)
        sock.close()
    # Let the nodes drain their queues, then look at them again.
    expected = {node: 0 for node, _ in TARGETS}
    for key, n in sent.items():
        expected[key.split(":")[0]] += n
    deadline = time.monotonic() + 60
    after: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        after = _states(config, 1.5)
        if all(
            after.get(node, {}).get("dropped", 0) - before[node]["dropped"] >= expected[node]
            for node in expected
        ):
            break
    rows = {}
    for node in expected:
        a, b = after.get(node, {}), before[node]
        rows[node] = {
            "sent": expected[node],
            "dropped": a.get("dropped", 0) - b["dropped"],
            "same_pid": a.get("pid") == b["pid"],
            "state": a.get("state", "silent"),
        }
    ok = all(
        r["same_pid"] and r["dropped"] == r["sent"] and r["state"] == before[n]["state"]
        for n, r in rows.items()
    )
    return {
        "frames_per_input": frames,
        "seconds": time.monotonic() - t_all,
        "nodes": rows,
        "ok": ok,
        "sent": sent,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=100_000, help="per input socket")
    parser.add_argument("--seconds", type=float, default=300.0, help="bound on the sending, all inputs")
    parser.add_argument("--config")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/fuzz_nodes.json"))
    args = parser.parse_args()
    res = fuzz(load_config(args.config), args.frames, args.seconds, args.seed)
    print(f"{'node':<11} {'sent':>8} {'dropped':>8} {'same pid':>9} {'state':>8}")
    for node, r in res["nodes"].items():
        print(f"{node:<11} {r['sent']:>8} {r['dropped']:>8} {r['same_pid']!s:>9} {r['state']:>8}")
    print(f"{'ok' if res['ok'] else 'FAILED'} in {res['seconds']:.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
