"""The tap: every node's events reach anyone who subscribes, as JSON lines with filters."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import zmq

from bus.messages import encode
from tests.conftest import REPO, BusEnv, wait_for
from tests.test_runtime import _chunks, ready


def test_tap_prints_filtered_events_as_json_lines(bus_env: BusEnv) -> None:
    bus_env.start("tap-proxy")
    bus_env.start("node", "playback")
    ready(bus_env, "playback")
    out = bus_env.root / "tap.jsonl"
    tap = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream_tts.cli",
            "tap",
            "--type",
            "finished",
            "--stream",
            "keep",
            "--output",
            str(out),
            "--seconds",
            "6",
        ],
        env=bus_env.env(),
        cwd=REPO,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.5)  # let the tap subscribe: a PUB/SUB tap only sees what is sent after it joined
    push = bus_env.config.endpoints.connect_socket(zmq.Context.instance(), "playback")
    for stream in ("skip", "keep"):
        for c in _chunks(stream, 0)[0]:
            push.send_multipart(encode(c))
    assert wait_for(lambda: out.exists() and out.read_text().count("\n") >= 1, 5)
    assert tap.wait(timeout=10) == 0
    lines = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [(e["node"], e["kind"], e["stream"], e["seq"]) for e in lines] == [
        ("playback", "finished", "keep", 0)
    ]
    stages = [s[0] for s in lines[0]["stamps"]]
    assert stages[-1] == "playback"
    assert lines[0]["detail"]["samples"] == 7200
    push.close(0)


def test_heartbeats_carry_state_and_counters(bus_env: BusEnv) -> None:
    bus_env.start("tap-proxy")
    bus_env.start("node", "ingest")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream_tts.cli",
            "tap",
            "--type",
            "heartbeat",
            "--node",
            "ingest",
            "--seconds",
            "3",
        ],
        env=bus_env.env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )
    events = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert events and all(e["kind"] == "heartbeat" for e in events)
    assert events[-1]["detail"]["state"] == "ready"
    assert {"received", "emitted", "dropped", "errors", "pid"} <= set(events[-1]["detail"])


def test_the_proxy_stops_at_once_on_sigterm_while_events_flow(bus_env: BusEnv) -> None:
    """`stream-tts down` must not wait for supervisord's kill: SIGTERM ends the proxy mid-traffic."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    for _ in range(3):
        proxy = bus_env.start("tap-proxy")
        assert wait_for(lambda: "I tap: proxy" in bus_env.log("tap-proxy"), 30)
        sub = bus_env.config.endpoints.connect_socket(ctx, "tap_out")
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        pub = bus_env.config.endpoints.connect_socket(ctx, "tap_in")
        time.sleep(0.3)
        for i in range(2000):
            pub.send(b"event %d" % i)
        assert sub.poll(5000)
        proxy.terminate()
        t0 = time.monotonic()
        proxy.wait(timeout=10)
        assert time.monotonic() - t0 < 1.0
        pub.close(0)
        sub.close(0)
        bus_env.procs.remove(proxy)
