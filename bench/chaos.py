"""Chaos: sentences from several streams while random nodes are killed -9; did every one play once, in order?

Runs against a pipeline under supervisord (`stream-tts up`, or `--up` here: the tiny models):

    python -m bench.chaos --config F --data-dir D [--up] [--sentences 500] [--streams 3] [--kills 100]
        [--kill-interval 1.5] [--min-up 3] [--window 4] [--burst 0] [--seed 0] [--json out.json]

Two paces. `--window N`: each producer keeps at most N of its sentences open (accepted, not yet
played), a long steady soak. `--burst N` (window 0): each producer writes its answer as an agent
does, N sentences as fast as they are accepted, all of them before the first is played, then waits
until the answer has been spoken before the next burst; the killer also strikes within the first
second of some bursts.

Producers: one thread per stream sends one sentence at a time (a Publisher, like `say`) and moves on
once the sentence is *accepted*, i.e. ingest has journaled it (a row in <data_dir>/journal.sqlite3;
ingest publishes its `finished` event at the same moment). Text that reaches ingest's SUB socket
but dies with ingest before it is journaled is not accepted: PUB/SUB has no ack, and a PUB with no
subscriber (ingest restarting) drops what it is given. So a producer re-sends a sentence that is
not journaled once a new ingest has been serving for REQUEUE_GRACE_S after a kill that could have
swallowed it (what the publisher had queued is delivered once it reconnects), or after
RESEND_AFTER_S. Nothing tells a producer for sure that a message died (TextIn carries no id
ingest could de-duplicate by), so a re-sent sentence may, rarely, be accepted twice: counted as
`accepted_twice`, two journal rows, each of which must play once like any other. Each producer
keeps at most `window` of its sentences accepted and still open in the journal (not yet played or
failed), or writes bursts (`--burst`, above).

Killer: every `kill_interval` seconds, SIGKILL one program picked at random among the four nodes
(ingest, translate, synthesize, playback) and the tap proxy that are serving: RUNNING in
supervisord for at least `min_up` seconds (pids and start times from its XML-RPC interface, which
`supervisorctl status` reads) with a `ready` heartbeat from that very pid on the tap (the tap proxy
has no heartbeat: RUNNING that long). A node still loading its model, or just back, is not hit
again at once: synthesize takes ~6 s to load here, and killing it whenever it comes back
would only starve the pipeline, not test it. supervisord restarts each one.

At the end (every accepted sentence finished in the journal, or the timeout), it compares the
journal with <data_dir>/played.jsonl and prints lost / duplicated / out-of-order counts (target
0/0/0; a sentence failed or given up counts as lost: nobody asked for it to go), the worst delay
from acceptance to playing, the worst silence after a kill (from the kill to the next sentence
played, for kills while something was still to be said; per killed program), and writes
everything as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sqlite3
import statistics
import sys
import threading
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus import topology
from bus.client import IngestUnavailable, Publisher
from bus.config import Config, load_config
from bus.endpoints import RECONNECT_IVL_MAX_MS
from bus.tap import events, subscribe

NODES = topology.NODE_NAMES
TARGETS = (*NODES, topology.TAP.name)  # what the killer may hit: every program
BURST_KILL_S = 1.0  # a burst-start kill strikes within this of the burst's first sentence
ACCEPT_POLL_S = 0.05
RESEND_AFTER_S = 15.0  # not journaled this long with no ingest restart in between: send again
KILL_LOOKBACK_S = 3.0  # an ingest kill this long before a send may still have swallowed it
REQUEUE_GRACE_S = RECONNECT_IVL_MAX_MS / 1000 + 1.5
SETTLE_S = 2.0  # after the journal has nothing open, wait this long for straggling WAVs


@dataclass
class Shared:
    """What the threads of one run share (guarded by `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    heartbeat: dict[str, tuple[int, str]] = field(default_factory=dict)  # node -> (pid, state)
    ingest_kills: list[float] = field(default_factory=list)  # monotonic times
    kills: list[dict[str, Any]] = field(default_factory=list)
    event_counts: dict[str, int] = field(default_factory=dict)
    resent: int = 0
    producers_done: int = 0
    burst_starts: list[float] = field(default_factory=list)  # monotonic, not yet struck


def _journal(data_dir: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{data_dir / 'journal.sqlite3'}?mode=ro", uri=True, timeout=5)
    return db


def _journaled(db: sqlite3.Connection, stream: str, text: str) -> bool:
    try:
        return (
            db.execute("SELECT 1 FROM sentences WHERE stream=? AND text=?", (stream, text)).fetchone()
            is not None
        )
    except sqlite3.Error:  # not created yet, or busy: ask again next time
        return False


def _open(db: sqlite3.Connection, stream: str) -> int:
    try:
        row = db.execute(
            "SELECT COUNT(*) FROM sentences WHERE stream=? AND state='sent'", (stream,)
        ).fetchone()
        return int(row[0])
    except sqlite3.Error:
        return 0


def _ingest_serving(sh: Shared, since_pid: int | None) -> bool:
    with sh.lock:
        pid, state = sh.heartbeat.get("ingest", (0, ""))
    return state == "ready" and pid != since_pid


def produce(config: Config, sh: Shared, stream: str, texts: list[str], window: int, burst: int = 0) -> None:
    """Window > 0: at most `window` open. Burst > 0: `burst` sentences at once, then wait till done."""
    db: sqlite3.Connection | None = None
    pub = Publisher(config, wait_s=2.0)
    try:
        for i, text in enumerate(texts):
            while not sh.stop.is_set():  # at most `limit` accepted and not yet done (played or failed)
                if db is None:
                    with contextlib.suppress(sqlite3.Error):
                        db = _journal(config.data_dir)
                if db is not None and (
                    (i % burst != 0 or _open(db, stream) == 0) if burst else _open(db, stream) < window
                ):  # a burst goes all at once, the next after the last was spoken
                    break
                time.sleep(ACCEPT_POLL_S)
            if burst and i % burst == 0:
                with sh.lock:
                    sh.burst_starts.append(time.monotonic())
            while not sh.stop.is_set():
                with sh.lock:
                    ingest_pid = sh.heartbeat.get("ingest", (0, ""))[0]
                sent_at = time.monotonic()
                try:
                    pub.send(stream, text, final=True, source="chaos")
                except IngestUnavailable:
                    pub.close()
                    time.sleep(0.2)
                    continue
                accepted = False
                while not sh.stop.is_set():
                    if db is None:
                        with contextlib.suppress(sqlite3.Error):
                            db = _journal(config.data_dir)
                    if db is not None and _journaled(db, stream, text):
                        accepted = True
                        break
                    with sh.lock:
                        killed = any(t >= sent_at - KILL_LOOKBACK_S for t in sh.ingest_kills)
                    if (
                        killed and _ingest_serving(sh, ingest_pid)
                    ) or time.monotonic() - sent_at > RESEND_AFTER_S:
                        # What the publisher queued while ingest was away is delivered once it has
                        # reconnected (backoff up to RECONNECT_IVL_MAX_MS): give that time first.
                        time.sleep(REQUEUE_GRACE_S)
                        if db is not None and _journaled(db, stream, text):
                            accepted = True
                        break
                    time.sleep(ACCEPT_POLL_S)
                if accepted:
                    break
                with sh.lock:
                    sh.resent += 1
    finally:
        pub.close()
        if db is not None:
            db.close()
        with sh.lock:
            sh.producers_done += 1


def watch_tap(config: Config, sh: Shared) -> None:
    """Heartbeats (who is serving, under which pid) and the events worth counting; every event but
    heartbeats goes to <data_dir>/chaos-events.jsonl for a post-mortem."""
    sock = subscribe(config)
    log = (config.data_dir / "chaos-events.jsonl").open("a", encoding="utf-8")
    try:
        while not sh.stop.is_set():
            for ev in events(sock, 0.3):
                if ev.kind != "heartbeat":
                    log.write(json.dumps(ev.to_json(), ensure_ascii=False) + "\n")
                with sh.lock:
                    if ev.kind == "heartbeat":
                        sh.heartbeat[ev.node] = (
                            int(ev.detail.get("pid", 0)),
                            str(ev.detail.get("state", "")),
                        )
                    elif ev.kind in (
                        "retry",
                        "failed",
                        "skipped",
                        "stale",
                        "duplicate",
                        "error",
                        "dropped",
                        "given_up",
                    ):
                        key = f"{ev.node}.{ev.kind}"
                        sh.event_counts[key] = sh.event_counts.get(key, 0) + 1
    finally:
        sock.close(linger=0)
        log.close()


def _supervisor(data_dir: Path) -> Any:
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{data_dir / 'supervisor.sock'}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def kill_loop(
    data_dir: Path, sh: Shared, kills: int, interval_s: float, rng: random.Random, min_up_s: float
) -> None:
    rpc = _supervisor(data_dir)
    next_at = time.monotonic() + interval_s
    burst_until = 0.0  # a burst began: strike before this (monotonic), whatever the interval says
    while not sh.stop.is_set() and len(sh.kills) < kills:
        with sh.lock:
            if sh.burst_starts:
                burst_until = max(sh.burst_starts) + BURST_KILL_S
                sh.burst_starts.clear()
        at_burst = time.monotonic() < burst_until
        if not at_burst:
            time.sleep(max(0.0, min(next_at, time.monotonic() + 0.1) - time.monotonic()))
            if time.monotonic() < next_at:
                continue
            next_at += interval_s
        else:
            time.sleep(0.05)
        try:
            info = {p["name"]: p for p in rpc.supervisor.getAllProcessInfo()}
        except (OSError, xmlrpc.client.Fault):
            continue
        with sh.lock:
            beats = dict(sh.heartbeat)
        serving = [
            n
            for n in TARGETS
            if info.get(n, {}).get("statename") == "RUNNING"
            and info[n]["now"] - info[n]["start"] >= (min(min_up_s, 1.0) if at_burst else min_up_s)
            and (n == topology.TAP.name or beats.get(n, (0, "")) == (info[n]["pid"], "ready"))
        ]  # the tap proxy has no heartbeat of its own: RUNNING long enough is serving
        if not serving:
            continue
        node = rng.choice(serving)
        pid = int(info[node]["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        burst_until = 0.0 if at_burst else burst_until
        with sh.lock:
            sh.kills.append({"node": node, "pid": pid, "at": time.time(), "at_burst": at_burst})
            sh.heartbeat[node] = (pid, "killed")
            if node == "ingest":
                sh.ingest_kills.append(time.monotonic())


def _open_count(data_dir: Path) -> int | None:
    try:
        db = _journal(data_dir)
        try:
            return int(db.execute("SELECT COUNT(*) FROM sentences WHERE state='sent'").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return None


def silences(
    records: list[dict[str, Any]], created: list[int], kills: list[dict[str, Any]]
) -> dict[str, Any]:
    """Seconds from each kill to the next sentence played, for kills that struck while something
    accepted was still to be played; the worst per killed program and overall."""
    starts = sorted(int(r["first_sample_wall_ns"]) for r in records)
    per: dict[str, float] = {}
    for k in kills:
        at = int(k["at"] * 1e9)
        nxt = next((t for t in starts if t >= at), None)
        if nxt is None or not any(c < at for c in created):
            continue
        silence = (nxt - at) / 1e9
        per[k["node"]] = max(per.get(k["node"], 0.0), silence)
    return {
        "worst": round(max(per.values()), 3) if per else None,
        "worst_per_node": {n: round(v, 3) for n, v in sorted(per.items())},
    }


def account(
    data_dir: Path, texts: dict[str, list[str]], kills: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Compare what was accepted (the journal) with what was played (played.jsonl)."""
    db = _journal(data_dir)
    try:
        rows = db.execute(
            "SELECT stream, seq, text, attempt, state, reason, created_ns FROM sentences"
        ).fetchall()
    finally:
        db.close()
    journal = {(r[0], r[1]): r for r in rows if r[0] in texts}
    records, torn = [], 0
    for line in (data_dir / "played.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            torn += 1
    seen: dict[tuple[str, int], int] = {}
    last_seq: dict[str, int] = {}
    out_of_order, unknown, wrong_text, delays = [], [], [], []
    for r in records:
        key = (str(r["stream"]), int(r["seq"]))
        if key[0] not in texts:
            continue
        seen[key] = seen.get(key, 0) + 1
        if key[1] < last_seq.get(key[0], -1):
            out_of_order.append(key)
        last_seq[key[0]] = max(key[1], last_seq.get(key[0], -1))
        row = journal.get(key)
        if row is None:
            unknown.append(key)
            continue
        if r["text_en"] != row[2]:
            wrong_text.append(key)
        if seen[key] == 1:
            delays.append((r["first_sample_wall_ns"] - row[6]) / 1e9)
    lost = sorted(k for k in journal if k not in seen)
    ours = [r for r in records if str(r["stream"]) in texts]
    unplayed = [r[6] for k, r in journal.items() if k not in seen]
    created_then = [r[6] for r in journal.values()]
    silence = silences(ours, created_then if unplayed or ours else [], kills or [])
    duplicated = sorted(k for k, n in seen.items() if n > 1)
    accepted_texts = {s: [r[2] for r in sorted(rows, key=lambda r: r[1]) if r[0] == s] for s in texts}
    return {
        "accepted": len(journal),
        "sent_by_producers": sum(len(v) for v in texts.values()),
        "accepted_twice": sum(len(v) - len(set(v)) for v in accepted_texts.values()),
        "never_accepted": sum(len(set(texts[s]) - set(accepted_texts[s])) for s in texts),
        "played_records": len(records),
        "lost": len(lost),
        "duplicated": sum(seen[k] - 1 for k in duplicated),
        "out_of_order": len(out_of_order),
        "unknown": len(unknown),
        "wrong_text": len(wrong_text),
        "torn_lines": torn,
        "lost_ids": [
            {"stream": s, "seq": q, "state": journal[(s, q)][4], "reason": journal[(s, q)][5]}
            for s, q in lost
        ][:50],
        "duplicated_ids": duplicated[:50],
        "out_of_order_ids": out_of_order[:50],
        "retried": sum(1 for r in journal.values() if r[3] > 0),
        "journal_states": {
            st: sum(1 for r in journal.values() if r[4] == st) for st in {r[4] for r in journal.values()}
        },
        "silence_after_kill_s": silence,
        "delay_s": {
            "worst": round(max(delays), 3) if delays else None,
            "p50": round(statistics.median(delays), 3) if delays else None,
            "p95": round(sorted(delays)[int(0.95 * (len(delays) - 1))], 3) if delays else None,
        },
    }


def letters(i: int) -> str:
    """A unique tag in letters (a, b, ..., ba, bb, ...): digits would be protected and restored by
    translate and read out in full, making every sentence's speech long; words are not."""
    out = ""
    while True:
        out = chr(ord("a") + i % 26) + out
        i //= 26
        if not i:
            return out


def run_chaos(
    config: Config,
    sentences: int = 500,
    streams: int = 3,
    kills: int = 100,
    kill_interval_s: float = 1.5,
    window: int = 4,
    seed: int = 0,
    timeout_s: float = 600.0,
    min_up_s: float = 3.0,
    burst: int = 0,
) -> dict[str, Any]:
    """Drive a running pipeline (see the module docstring); returns the result as a dict."""
    rng = random.Random(seed)
    names = [f"chaos{chr(ord('a') + i)}" for i in range(streams)]
    texts = {
        s: [f"Stream {s} line {letters(i)} is done." for i in range(i0, sentences, streams)]
        for i0, s in enumerate(names)
    }
    sh = Shared()
    t0, wall0 = time.monotonic(), time.time()
    watchers = [
        threading.Thread(target=watch_tap, args=(config, sh), daemon=True),
    ]
    for t in watchers:
        t.start()
    time.sleep(1.5)  # a heartbeat from every node
    producers = [
        threading.Thread(target=produce, args=(config, sh, s, texts[s], window, burst), daemon=True)
        for s in names
    ]
    killer = threading.Thread(
        target=kill_loop, args=(config.data_dir, sh, kills, kill_interval_s, rng, min_up_s), daemon=True
    )
    for t in [*producers, killer]:
        t.start()
    deadline = t0 + timeout_s
    timed_out = False
    sent_s: float | None = None  # when the producers had every sentence accepted
    while True:
        if sent_s is None and sh.producers_done == len(producers):
            sent_s = time.monotonic() - t0
        done = sh.producers_done == len(producers) and not killer.is_alive()
        if done and _open_count(config.data_dir) == 0:
            time.sleep(SETTLE_S)
            break
        if time.monotonic() > deadline:
            timed_out = True
            break
        time.sleep(0.5)
    produced_s = time.monotonic() - t0
    sh.stop.set()
    for t in [*producers, killer, *watchers]:
        t.join(timeout=5)
    result = account(config.data_dir, texts, sh.kills)
    per_node = {n: sum(1 for k in sh.kills if k["node"] == n) for n in TARGETS}
    result.update(
        seconds=round(produced_s, 1),
        # which phase set the length: the last kill, or the last sentence accepted
        kills_done_s=round(max((k["at"] for k in sh.kills), default=wall0) - wall0, 1),
        accepted_by_s=None if sent_s is None else round(sent_s, 1),
        timed_out=timed_out,
        kills=len(sh.kills),
        kills_at_burst_start=sum(1 for k in sh.kills if k.get("at_burst")),
        kill_log=[{"node": k["node"], "at_s": round(k["at"] - wall0, 2)} for k in sh.kills],
        kills_per_node=per_node,
        producer_resends=sh.resent,
        events=dict(sorted(sh.event_counts.items())),
        settings={
            "sentences": sentences,
            "streams": streams,
            "kills": kills,
            "kill_interval_s": kill_interval_s,
            "window": window,
            "burst": burst,
            "seed": seed,
            "min_up_s": min_up_s,
        },
    )
    return result


def table(res: dict[str, Any]) -> str:
    d = res["delay_s"]
    rows = [
        ("accepted (journaled)", res["accepted"]),
        ("lost", res["lost"]),
        ("duplicated", res["duplicated"]),
        ("out of order", res["out_of_order"]),
        ("worst delay (s)", d["worst"]),
        ("p50 / p95 delay (s)", f"{d['p50']} / {d['p95']}"),
        (
            "kills (i/t/s/p/tap)",
            f"{res['kills']} ({'/'.join(str(v) for v in res['kills_per_node'].values())})",
        ),
        ("worst silence after a kill (s)", res["silence_after_kill_s"]["worst"]),
        ("  per killed program", res["silence_after_kill_s"]["worst_per_node"]),
        ("sentences retried", res["retried"]),
        ("producer re-sends", res["producer_resends"]),
        ("seconds", res["seconds"]),
        ("last kill / all accepted at (s)", f"{res['kills_done_s']} / {res['accepted_by_s']}"),
    ]
    return "\n".join(f"{k:<31} {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--up", action="store_true", help="`stream-tts up --tiny` first, `down` after")
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--kill-interval", type=float, default=1.5)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--burst", type=int, default=0, help="sentences per answer, all at once (window 0)")
    parser.add_argument("--min-up", type=float, default=3.0, help="a node is killed again only after this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    os.environ["STREAM_TTS_DATA_DIR"] = str(Path(args.data_dir).resolve())
    common = ["--config", args.config, "--data-dir", args.data_dir]
    if args.up:
        from stream_tts.supervise import cli_up

        if cli_up([*common, "--tiny", "--quiet"]) != 0:
            return 1
    try:
        res = run_chaos(
            load_config(args.config),
            sentences=args.sentences,
            streams=args.streams,
            kills=args.kills,
            kill_interval_s=args.kill_interval,
            window=args.window,
            seed=args.seed,
            timeout_s=args.timeout,
            min_up_s=args.min_up,
            burst=args.burst,
        )
    finally:
        if args.up:
            from stream_tts.supervise import cli_down

            cli_down(common)
    print(table(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1), encoding="utf-8")
    ok = res["lost"] == res["duplicated"] == res["out_of_order"] == 0 and not res["timed_out"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
