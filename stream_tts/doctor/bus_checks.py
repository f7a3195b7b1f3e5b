"""The doctor's checks of the running bus: heartbeats on the tap, ports, supervisord, endpoints.

A port is fine when it is free or when the node that binds it answers on the tap; a port held
by anything else is an error that names the endpoint and how to move it.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from bus import topology
from bus.config import Config
from bus.endpoints import LAYOUT
from stream_tts.doctor.checks import ERROR, OK, WARN, Check

CONNECT_TIMEOUT_S = 2.0
OWNER = {name: topology.owner(name) for name in LAYOUT}  # which program binds each endpoint


@dataclass(frozen=True)
class Beat:
    """The last heartbeat a node sent on the tap."""

    state: str
    error: str
    pid: int | None


# ---- the running pipeline --------------------------------------------------------------------
def heartbeats(config: Config, seconds: float) -> dict[str, Beat]:
    """The nodes that answer on this config's tap, listening `seconds` (a heartbeat is 1 s)."""
    from bus.tap import events, subscribe

    sock = subscribe(config)
    beats: dict[str, Beat] = {}
    try:
        for ev in events(sock, seconds):
            if ev.kind == "heartbeat":
                pid = ev.detail.get("pid")
                beats[ev.node] = Beat(
                    str(ev.detail.get("state", "?")),
                    str(ev.detail.get("error", "")),
                    pid if isinstance(pid, int) else None,
                )
    finally:
        sock.close(linger=0)
    return beats


def _host_port(addr: str) -> tuple[str, int] | None:
    if not addr.startswith("tcp://"):
        return None
    host, _, port = addr[len("tcp://") :].rpartition(":")
    host = host.strip("[]")
    return ("0.0.0.0" if host in ("*", "") else host), int(port)


def is_local(host: str) -> bool:
    if host in ("0.0.0.0", "localhost", "::1", "::") or host.startswith("127."):
        return True
    try:
        return host in socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        return False


def port_in_use(host: str, port: int) -> bool:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as zmq does: TIME_WAIT is not "in use"
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def who_listens(port: int) -> str:
    """'python3 (pid 123)' from `ss` where it is there and allowed to say; else ''."""
    if not shutil.which("ss"):
        return ""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=3
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
    return f"{m.group(1)} (pid {m.group(2)})" if m else ""


def check_ports(config: Config, beats: Mapping[str, Beat]) -> list[Check]:
    rows, free, ours = [], [], []
    for name, addr in config.endpoints.bind.items():
        hp = _host_port(addr)
        if hp is None or not is_local(hp[0]):
            continue  # another machine binds it: see the endpoints row
        host, port = hp
        owner = OWNER[name]
        if not port_in_use(host, port):
            free.append(str(port))
        elif owner in beats or (owner == "tap" and beats):
            ours.append(f"{port} ({owner})")
        else:
            who = who_listens(port)
            rows.append(
                Check(
                    f"port {port}",
                    ERROR,
                    f"{name} endpoint {addr} is taken by {who or 'another program'}, not by our {owner}",
                    f'stop that program, or move the endpoint: [endpoints] {name} = "tcp://127.0.0.1:OTHER" '
                    f"in the config (or STREAM_TTS_ENDPOINT_{name.upper()})",
                )
            )
    parts = ([f"free: {', '.join(free)}"] if free else []) + ([f"ours: {', '.join(ours)}"] if ours else [])
    rows.insert(0, Check("ports", ERROR if rows else OK, "; ".join(parts) or "none bound on this machine"))
    if rows[1:]:
        rows[0] = Check("ports", ERROR, "; ".join([*parts, f"{len(rows) - 1} taken by others"]))
    return rows


def check_supervisor(config: Config, beats: Mapping[str, Beat]) -> Check:
    from stream_tts.supervise import NODES, is_running

    conf = config.data_dir / "supervisord.conf"
    running = conf.exists() and is_running(conf)
    seen = {n: b for n, b in beats.items() if n in NODES}
    if not running and not seen:
        return Check("pipeline", WARN, f"not running (data dir {config.data_dir})", "stream-tts up")
    bad = {n: b for n, b in seen.items() if b.state != "ready"}
    silent = [n for n in NODES if n not in seen]
    where = "supervisord running" if running else "no supervisord here, but nodes answer on the tap"
    if bad or (running and silent):
        why = [f"{n}: {b.state}{' (' + b.error + ')' if b.error else ''}" for n, b in bad.items()]
        why += [f"{n}: no heartbeat" for n in silent]
        return Check(
            "pipeline",
            ERROR,
            f"{where}; " + "; ".join(why),
            f"stream-tts status; logs in {config.data_dir / 'log'}; then stream-tts down && stream-tts up",
        )
    return Check("pipeline", OK, f"{where}; {', '.join(seen)} ready")


def check_endpoints(config: Config) -> Check:
    remote = {}
    for name, addr in config.endpoints.connect.items():
        hp = _host_port(addr)
        if hp is not None and not is_local(hp[0]):
            remote[name] = hp
    if not remote:
        return Check("endpoints", OK, "every endpoint is on this machine")
    down = []
    for name, (host, port) in remote.items():
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            down.append(f"{name} tcp://{host}:{port} ({exc.strerror or exc})")
    if down:
        return Check(
            "endpoints",
            ERROR,
            "cannot reach " + "; ".join(down),
            "start stream-tts on that machine (`stream-tts up`), and check its firewall and [bind] address",
        )
    return Check("endpoints", OK, "reachable: " + ", ".join(f"{n} {h}:{p}" for n, (h, p) in remote.items()))
