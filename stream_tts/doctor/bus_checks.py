"""The doctor's checks of the running bus: heartbeats on the tap, ports and sockets, supervisord,
endpoints, and what another account on this machine can reach.

A port (tcp) or socket (ipc) is fine when it is free or when the node that binds it answers on the
tap; one held by anything else is an error that names the endpoint and how to move it. The privacy
rows warn about a data dir or bus folder other accounts can enter and a bus open to them (TCP on
loopback without CURVE), each with the command that fixes it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bus import topology
from bus.config import Config
from bus.endpoints import LAYOUT, answers, ipc_path
from bus.private import may_tighten, open_entries, open_to_others
from bus.security import is_loopback
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


def who_answers(path: Path) -> str:
    """'python3 (pid 123)' listening on the Unix socket `path`, from `ss` where it can say; else ''."""
    if not shutil.which("ss"):
        return ""
    try:
        out = subprocess.run(["ss", "-Hxlp"], capture_output=True, text=True, timeout=3).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for line in out.splitlines():
        if f" {path} " in f"{line} ":
            m = re.search(r'users:\(\("([^"]+)",pid=(\d+)', line)
            return f"{m.group(1)} (pid {m.group(2)})" if m else ""
    return ""


def _ipc_row(name: str, addr: str, path: Path, beats: Mapping[str, Beat]) -> tuple[str, str | Check]:
    """('free' | 'ours', what to list) or ('taken', the error row) for one ipc endpoint."""
    owner = OWNER[name]
    try:
        there = path.exists() and answers(path)
    except OSError as exc:  # e.g. permission denied: it is not ours to reach
        there, why = True, exc.strerror or str(exc)
    else:
        why = ""
    if not there:
        return "free", name  # no file, or one left behind that nobody answers on: rebound at start
    if not why and (owner in beats or (owner == "tap" and beats)):
        return "ours", f"{name} ({owner})"
    who = who_answers(path) or why or "another program"
    return "taken", Check(
        f"socket {name}",
        ERROR,
        f"{name} endpoint {addr} is answered by {who}, not by our {owner}",
        f"stop that program (another stream-tts with this data dir? `stream-tts status`), or move "
        f'the endpoint: [endpoints] {name} = "ipc:///OTHER/FOLDER/{name}.sock" in the config '
        f"(or STREAM_TTS_ENDPOINT_{name.upper()})",
    )


def check_ports(config: Config, beats: Mapping[str, Beat]) -> list[Check]:
    rows: list[Check] = []
    free: list[str] = []
    ours: list[str] = []
    for name, addr in config.endpoints.bind.items():
        path = ipc_path(addr)
        if path is not None:
            kind, what = _ipc_row(name, addr, path, beats)
            if isinstance(what, Check):
                rows.append(what)
            else:
                (ours if kind == "ours" else free).append(what)
            continue
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


# ---- who else on this machine can reach it -------------------------------------------------------
def check_private_files(config: Config) -> Check:
    """The data dir: ours and 0700, and no file of the project's in it open to other accounts."""
    data = config.data_dir
    if not data.exists():
        return Check("private files", OK, f"{data} not made yet (it is made 0700)")
    why = open_to_others(data)
    if why is not None:
        ours = data.lstat().st_uid == os.geteuid()
        return Check(
            "private files",
            WARN,
            f"the data dir {data} is {why}: other accounts can read the journal, played.jsonl, logs, WAVs",
            f"chmod 700 {data}" + ("   (`stream-tts up` does it too)" if may_tighten(data) else "")
            if ours
            else f"use a data dir of your own: --data-dir, or data_dir in the config (not {data})",
        )
    loose = open_entries(data)
    if loose:
        shown = ", ".join(f"{p.relative_to(data)} ({w.split(':')[0]})" for p, w in loose[:3])
        more = f" and {len(loose) - 3} more" if len(loose) > 3 else ""
        return Check(
            "private files",
            WARN,
            f"{data} is 0700, but {len(loose)} of the project's files in it are not private (left by "
            f"an older version; out of reach while the folder stays 0700): {shown}{more}",
            f"chmod -R go= {data}   (`stream-tts up` does it too)",
        )
    return Check("private files", OK, f"{data} and everything in it: this account only")


def check_private_bus(config: Config) -> Check:
    """Every ipc socket's folder ours and 0700; a TCP endpoint on loopback, without CURVE, is one
    any account on the machine can connect to; one that leaves the machine is CURVE."""
    ep = config.endpoints
    addrs = {a for peers in ep.peers.values() for a in peers} | set(ep.bind.values())
    folders = sorted({p.parent for a in addrs if (p := ipc_path(a)) is not None})
    open_folders = []
    for folder in folders:
        try:
            why = open_to_others(folder)
        except FileNotFoundError:
            continue  # made 0700 by whoever comes first
        except OSError as exc:
            why = f"not reachable here ({exc.strerror or exc})"
        if why is not None:
            open_folders.append((folder, why))
    if open_folders:
        folder, why = open_folders[0]
        try:
            ours = folder.lstat().st_uid == os.geteuid() and not folder.is_symlink()
        except OSError:
            ours = False
        return Check(
            "private bus",
            WARN,
            f"the bus folder {folder} is {why}: nodes refuse to use it",
            f"chmod 700 {folder}" if ours else f"remove {folder} (it is not this account's)",
        )
    names = [n for n, a in ep.bind.items() if a.startswith("ipc://@")]
    names += [
        n
        for n, peers in ep.peers.items()
        if any(a.startswith("tcp://") and is_loopback(a) for a in peers)
        or (ep.bind[n].startswith("tcp://") and is_loopback(ep.bind[n]))
    ]
    if names:
        names = sorted(set(names))
        return Check(
            "private bus",
            WARN,
            f"{', '.join(names)} on TCP loopback (or an abstract socket), without CURVE: any account on "
            "this machine can connect, read the tap, and make the speakers talk",
            f"drop {', '.join(names)} from [endpoints]/[bind] (and STREAM_TTS_ENDPOINT_*): the default is a "
            "private ipc socket",
        )
    remote = sorted(n for n, peers in ep.peers.items() if any(not is_loopback(a) for a in peers))
    where = f"ipc sockets in {', '.join(map(str, folders))} (0700)" if folders else "no ipc sockets"
    if remote:
        where += f"; {', '.join(remote)} leave(s) the machine: CURVE"
    return Check("private bus", OK, where)
