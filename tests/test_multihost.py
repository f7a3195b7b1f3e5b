"""Several workers of one stage, on one machine or several (bus/endpoints.py, SHAREABLE).

Fast: a list of addresses in [endpoints] (or comma-separated in the environment) makes the upstream
PUSH deal round-robin over the workers that are up, none queued for one that is down; a stage that
cannot be shared says so. Slow: across Linux network namespaces made here (tests/netns.py), ingest,
synthesize and playback on one host, two translate workers on two others (one slower than the
other, so sentences overtake each other on the way), every endpoint from a TOML file per host,
CURVE keys from one shared folder; both workers take sentences and playback still speaks every
sentence once, in order."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import zmq

from bus.config import load_config
from bus.endpoints import EndpointError, Endpoints
from bus.messages import Sentence, decode, encode
from bus.security import make_keys
from tests.conftest import free_ports
from tests.netns import hosts, netns_available

why_not = netns_available()
NO_IPC = Path("/nonexistent/bus")  # the default ipc folder, never used by these tcp-only tests


def test_a_list_of_worker_addresses_is_dealt_round_robin_skipping_a_worker_that_is_down() -> None:
    a, b, down = (f"tcp://127.0.0.1:{p}" for p in free_ports(3))
    ep = Endpoints.load({"translate": [a, b, down]}, {}, environ={}, folder=NO_IPC)
    assert ep.connect["translate"] == a and ep.peers["translate"] == (a, b, down)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    workers = [
        Endpoints.load({"translate": addr}, {}, environ={}, folder=NO_IPC).bind_socket(ctx, "translate")
        for addr in (a, b)
    ]
    push = ep.connect_socket(ctx, "translate")
    try:
        time.sleep(0.5)  # both connections complete; the third never will
        for seq in range(20):
            push.send_multipart(encode(Sentence(stream="rr", seq=seq, text="x")), flags=zmq.NOBLOCK)
        got: list[list[int]] = [[], []]
        deadline = time.monotonic() + 5
        while sum(map(len, got)) < 20 and time.monotonic() < deadline:
            for i, w in enumerate(workers):
                while w.poll(10):
                    msg = decode(w.recv_multipart())
                    assert isinstance(msg, Sentence)
                    got[i].append(msg.seq)
        assert sorted(got[0] + got[1]) == list(range(20))  # none went into the dead worker's queue
        assert len(got[0]) == len(got[1]) == 10, got
    finally:
        push.close(0)
        for w in workers:
            w.close(0)


def test_worker_lists_from_the_environment_and_stages_that_cannot_be_shared() -> None:
    ep = Endpoints.load(
        {}, {}, environ={"STREAM_TTS_ENDPOINT_TRANSLATE": "tcp://10.0.0.2:1,tcp://10.0.0.3:1"}, folder=NO_IPC
    )
    assert ep.peers["translate"] == ("tcp://10.0.0.2:1", "tcp://10.0.0.3:1")
    assert ep.bind["translate"] == "tcp://10.0.0.2:1"
    for name in ("synthesize", "playback", "acks"):
        with pytest.raises(EndpointError, match="only translate may list several workers"):
            Endpoints.load({name: ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"]}, {}, environ={}, folder=NO_IPC)
    with pytest.raises(EndpointError, match="empty list"):
        Endpoints.load({"translate": []}, {}, environ={}, folder=NO_IPC)
    with pytest.raises(EndpointError, match="not an address"):
        Endpoints.load({"translate": ["tcp://127.0.0.1:1", 5]}, {}, environ={}, folder=NO_IPC)


# ---- across network namespaces ----------------------------------------------------------------------

NAMES = ("text", "synthesize", "playback", "acks", "control", "tap_in", "tap_out")
SENTENCES = [f"Worker test {w} is here." for w in ("one", "two", "three", "four", "five", "six", "seven")]


def _write(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


def _env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_TTS_")}
    env.update(STREAM_TTS_CONFIG=str(config), PYTHONUNBUFFERED="1")
    return env


def _events(path: Path) -> list[dict[str, Any]]:
    out = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # the line being written
    return out


def _ready(events: list[dict[str, Any]]) -> dict[str, set[int]]:
    """node -> pids whose latest heartbeat says ready."""
    latest: dict[tuple[str, int], str] = {}
    for ev in events:
        if ev["kind"] == "heartbeat":
            latest[(ev["node"], int(ev["detail"]["pid"]))] = str(ev["detail"]["state"])
    out: dict[str, set[int]] = {}
    for (node, pid), state in latest.items():
        if state == "ready":
            out.setdefault(node, set()).add(pid)
    return out


@pytest.mark.slow
@pytest.mark.skipif(why_not is not None, reason=str(why_not))
def test_two_translate_workers_on_two_hosts_and_playback_speaks_in_order(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    gguf, cosy = tiny_models
    keys = tmp_path / "keys"
    make_keys(keys)  # one folder for every host: each one's client key is authorized
    ports = dict(zip(NAMES, free_ports(len(NAMES)), strict=True))
    worker_port = free_ports(1)[0]
    with hosts(3, subnet=214) as (hub, w1, w2):
        on_hub = {n: f"tcp://{hub.addr}:{p}" for n, p in ports.items()}
        workers = [f"tcp://{w.addr}:{worker_port}" for w in (w1, w2)]
        common = {"security": {"keys_dir": str(keys)}}
        hub_cfg = _write(
            tmp_path / "hub.toml",
            {
                "data_dir": str(tmp_path / "hub"),
                "endpoints": {**on_hub, "translate": workers},
                "ingest": {"deadline_base_s": 20.0, "deadline_min_s": 10.0},
                "synthesize": {"model_dir": str(cosy), "voice": "", "threads": 1},
                "playback": {"sink": "wav"},
                **common,
            },
        )
        worker_cfgs = [
            _write(
                tmp_path / f"worker{i}.toml",
                {
                    "data_dir": str(tmp_path / f"worker{i}"),
                    "endpoints": {**on_hub, "translate": addr},  # binds its own; the rest is on the hub
                    # The second worker decodes 12x more tokens: its sentences arrive late and the
                    # next ones, dealt to the first worker, overtake them.
                    "translate": {"model": str(gguf), "max_tokens": max_tokens},
                    **common,
                },
            )
            for i, (addr, max_tokens) in enumerate(zip(workers, (2, 24), strict=True))
        ]
        tap_log = tmp_path / "tap.jsonl"
        py = hub.python()
        procs = [
            hub.popen([*py, "-m", "stream_tts.cli", "tap-proxy"], _env(hub_cfg), tmp_path / "tap-proxy.log"),
        ]
        time.sleep(0.5)
        procs.append(
            hub.popen(
                [*py, "-m", "stream_tts.cli", "tap", "--heartbeats", "--output", str(tap_log)],
                _env(hub_cfg),
                tmp_path / "tap.log",
            )
        )
        for node in ("ingest", "synthesize", "playback"):
            procs.append(
                hub.popen(
                    [*py, "-m", "stream_tts.cli", "node", node], _env(hub_cfg), tmp_path / f"{node}.log"
                )
            )
        for i, (host, cfg) in enumerate(zip((w1, w2), worker_cfgs, strict=True)):
            procs.append(
                host.popen(
                    [*py, "-m", "stream_tts.cli", "node", "translate"], _env(cfg), tmp_path / f"w{i}.log"
                )
            )

        def logs() -> str:
            return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(tmp_path.glob("*.log")))

        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                ready = _ready(_events(tap_log))
                if len(ready.get("translate", ())) == 2 and all(
                    n in ready for n in ("ingest", "synthesize", "playback")
                ):
                    break
                time.sleep(0.5)
            else:
                pytest.fail(f"not every node got ready: {_ready(_events(tap_log))}\n{logs()}")
            for stream in ("mh0", "mh1"):
                r = hub.run(
                    [*py, "-m", "stream_tts.cli", "say", "--stream", stream, " ".join(SENTENCES)],
                    _env(hub_cfg),
                )
                assert r.returncode == 0, r.stderr
            played_log = tmp_path / "hub" / "played.jsonl"
            n = 2 * len(SENTENCES)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(_events(played_log)) < n:
                time.sleep(0.5)
            time.sleep(1.0)  # anything played twice would show up now
            played = _events(played_log)
            for stream in ("mh0", "mh1"):
                mine = [(r["seq"], r["text_en"]) for r in played if r["stream"] == stream]
                assert mine == list(enumerate(SENTENCES)), (stream, mine, logs())
            events = _events(tap_log)
            # Both workers took sentences (their own heartbeat counters, by pid) ...
            received: dict[int, int] = {}
            for ev in events:
                if ev["node"] == "translate" and ev["kind"] == "heartbeat":
                    received[int(ev["detail"]["pid"])] = int(ev["detail"]["received"])
            assert len(received) == 2 and all(v > 0 for v in received.values()), received
            assert sum(received.values()) >= n
            # ... and sentences did overtake each other before playback put them back in order.
            synthesized = [
                (ev["stream"], ev["seq"])
                for ev in events
                if ev["node"] == "synthesize" and ev["kind"] == "finished"
            ]
            overtaken = [
                (s, q)
                for i, (s, q) in enumerate(synthesized)
                if any(s2 == s and q2 > q for s2, q2 in synthesized[:i])
            ]
            assert overtaken, f"no sentence was overtaken, the order was never at stake: {synthesized}"
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except Exception:
                    p.kill()


def test_host_configs_load(tmp_path: Path) -> None:
    """The per-host files above are valid configs on their own (no namespaces needed)."""
    cfg = _write(
        tmp_path / "w.toml",
        {
            "endpoints": {"translate": ["tcp://10.1.0.2:5", "tcp://10.1.0.3:5"]},
            "bind": {"translate": "tcp://*:5"},
        },
    )
    c = load_config(cfg, environ={})
    assert c.endpoints.peers["translate"] == ("tcp://10.1.0.2:5", "tcp://10.1.0.3:5")
    assert c.endpoints.bind["translate"] == "tcp://*:5"
