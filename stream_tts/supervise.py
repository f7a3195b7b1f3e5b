"""`stream-tts up | down | status`: the pipeline under supervisord, seen through the tap.

`up` renders the repo's supervisord.conf into the data directory (its paths and the config
file put in), starts supervisord as a daemon, and returns once every node has reported ready
on the tap, or says which node is not and why. It keeps the data directory private first: 0700,
and what an older version left readable by others closed (bus/private.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from bus import topology
from bus.config import (
    ENV_CONFIG,
    ENV_DATA_DIR,
    IN_CHECKOUT,
    REPO_ROOT,
    Config,
    ConfigError,
    add_config_option,
    load_config,
)
from bus.private import FILE_MODE, make_private_dirs, secure_data_dir, tighten
from bus.tap import events, subscribe

NODES = topology.NODE_NAMES
PROGRAMS = tuple(p.name for p in topology.PROGRAMS)
# The repo's file; an installed copy carries the same file in the package (a symlink in git).
SUPERVISORD_CONF = (
    REPO_ROOT / "supervisord.conf" if IN_CHECKOUT else Path(__file__).with_name("supervisord.conf")
)
UP_TIMEOUT_S = 300.0  # real models can take minutes to load the first time
STATUS_LISTEN_S = 1.6  # a little more than one heartbeat
SUPERVISOR_CHECK_S = 2.0  # how often `up` asks supervisord whether a node gave up (FATAL)


@dataclass
class NodeState:
    name: str
    process: str = "?"
    pid: int | None = None
    state: str = "unknown"
    error: str = ""
    counters: dict[str, int] | None = None


def render_conf(data_dir: Path, config_path: Path | None) -> Path:
    """supervisord.conf with its data paths moved to data_dir and the config passed on."""
    text = SUPERVISORD_CONF.read_text(encoding="utf-8")
    text = text.replace("%(here)s/var", str(data_dir))
    text = text.replace("%(here)s/.venv/bin/python", sys.executable)  # the python that runs `up`
    text = text.replace("%(here)s", str(REPO_ROOT if IN_CHECKOUT else data_dir))
    env_line = f'environment=STREAM_TTS_DATA_DIR="{data_dir}",PYTHONUNBUFFERED="1"'
    if config_path is not None:
        env_line += f',{ENV_CONFIG}="{config_path}"'
    lines = [env_line if ln.startswith("environment=STREAM_TTS_DATA_DIR") else ln for ln in text.splitlines()]
    make_private_dirs(data_dir / "log")
    out = data_dir / "supervisord.conf"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    out.chmod(FILE_MODE)  # one an older version wrote 0644
    return out


def supervisorctl(conf: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def is_running(conf: Path) -> bool:
    pidfile = _pidfile(conf)
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return True
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return False


def _pidfile(conf: Path) -> Path:
    for line in conf.read_text(encoding="utf-8").splitlines():
        if line.startswith("pidfile="):
            return Path(line.split("=", 1)[1].strip())
    raise ConfigError(f"{conf} has no pidfile")


def start(config: Config, tiny: bool = False, timeout_s: float = UP_TIMEOUT_S, quiet: bool = False) -> int:
    data_dir = config.data_dir
    secure_data_dir(data_dir)  # 0700, made or closed (never a home folder)
    if closed := tighten(data_dir):
        _say(quiet, f"I up: closed {closed} file(s) or folder(s) in {data_dir} to other accounts")
    config_path = config.path
    if tiny:
        from stream_tts.tiny import tiny_config

        config_path = tiny_config(config, data_dir / "tiny-models", progress=not quiet)
        config = load_config(config_path, {**os.environ, ENV_DATA_DIR: str(data_dir)})
    conf = render_conf(data_dir, config_path)
    tap = subscribe(config)  # subscribe before starting, so no ready event is missed
    try:
        if is_running(conf):
            _say(quiet, f"I up: supervisord already running ({conf}); waiting for the nodes")
        else:
            _say(quiet, f"I up: starting supervisord ({conf})")
            env = {**os.environ, ENV_DATA_DIR: str(data_dir)}
            if config_path is not None:
                env[ENV_CONFIG] = str(config_path)
            proc = subprocess.run(
                [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if proc.returncode != 0:
                print(
                    f"E up: supervisord failed: {proc.stderr.strip() or proc.stdout.strip()}", file=sys.stderr
                )
                return 1
        states = wait_ready(tap, timeout_s, quiet, conf)
    finally:
        tap.close(linger=0)
    bad = {n: s for n, s in states.items() if s.state != "ready"}
    if bad:
        for name, s in bad.items():
            why = f": {s.error}" if s.error else ""
            print(f"E up: {name} is {s.state}{why}", file=sys.stderr)
        print(f"E up: logs in {data_dir / 'log'}; `stream-tts status` to look again", file=sys.stderr)
        return 1
    _say(quiet, "I up: all nodes ready. Try: stream-tts say 'Hello from stream-tts.'")
    return 0


def wait_ready(
    tap: zmq.Socket, timeout_s: float, quiet: bool = False, conf: Path | None = None
) -> dict[str, NodeState]:
    """Node states from heartbeats until all are ready, or each is ready or failed for good (an
    engine error, or supervisord gave up on the process: FATAL), or time is up."""
    states = {n: NodeState(n) for n in NODES}
    deadline = time.monotonic() + timeout_s
    shown: dict[str, str] = {}

    def show(st: NodeState) -> None:
        if shown.get(st.name) != st.state:
            shown[st.name] = st.state
            _say(quiet, f"I up: {st.name}: {st.state}" + (f" ({st.error})" if st.error else ""))

    def settled() -> bool:
        return all(s.state in ("ready", "error", "fatal", "crashing") for s in states.values())

    while time.monotonic() < deadline and not settled():
        for ev in events(tap, min(SUPERVISOR_CHECK_S, max(deadline - time.monotonic(), 0.01))):
            if ev.node in states and ev.kind == "heartbeat":
                st = states[ev.node]
                st.state = str(ev.detail.get("state", "unknown"))
                st.error = str(ev.detail.get("error", ""))
                show(st)
            elif (
                ev.node in states
                and ev.kind == "error"
                and ev.detail.get("during") == "setup"
                and ev.detail.get("fatal")
            ):
                st = states[ev.node]
                st.state, st.error = "crashing", str(ev.detail.get("error", ""))
                show(st)
            if settled():  # the last node's word ends the wait at once, not at the window's end
                break
        if conf is not None and not settled():
            for line in supervisorctl(conf, "status").stdout.splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0] in states and parts[1] == "FATAL":
                    st = states[parts[0]]
                    st.state, st.error = "fatal", f"the process keeps exiting; see {_log_of(conf, parts[0])}"
                    show(st)
    return states


def _log_of(conf: Path, program: str) -> Path:
    return conf.parent / "log" / f"{program}.log"


def stop(config: Config, quiet: bool = False) -> int:
    conf = config.data_dir / "supervisord.conf"
    if not conf.exists() or not is_running(conf):
        _say(quiet, "I down: not running")
        return 0
    pid = int(_pidfile(conf).read_text().strip())
    supervisorctl(conf, "shutdown")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            _say(quiet, "I down: stopped")
            return 0
        time.sleep(0.1)
    print(f"E down: supervisord (pid {pid}) still running after 30 s", file=sys.stderr)
    return 1


def status(config: Config) -> tuple[bool, dict[str, NodeState]]:
    conf = config.data_dir / "supervisord.conf"
    states = {n: NodeState(n) for n in PROGRAMS}
    running = conf.exists() and is_running(conf)
    if running:
        out = supervisorctl(conf, "status").stdout
        for line in out.splitlines():
            parts = line.split()
            if parts and parts[0] in states:
                states[parts[0]].process = parts[1]
                if "pid" in parts:
                    states[parts[0]].pid = int(parts[parts.index("pid") + 1].rstrip(","))
    tap = subscribe(config)
    try:
        for ev in events(tap, STATUS_LISTEN_S):
            if ev.kind == "heartbeat" and ev.node in states:
                st = states[ev.node]
                st.state = str(ev.detail.get("state", "unknown"))
                st.error = str(ev.detail.get("error", ""))
                st.counters = {
                    k: int(v)
                    for k, v in ev.detail.items()
                    if k in ("received", "emitted", "dropped", "errors")
                }
    finally:
        tap.close(linger=0)
    if states["tap"].process == "RUNNING":
        states["tap"].state = "ready"
    return running, states


def _say(quiet: bool, line: str) -> None:
    if not quiet:
        print(line, file=sys.stderr, flush=True)


def _common(prog: str, argv: list[str], extra: bool = False) -> tuple[argparse.Namespace, Config | None]:
    parser = argparse.ArgumentParser(prog=f"stream-tts {prog}")
    add_config_option(parser)
    parser.add_argument("--data-dir", help="where logs, journal, WAVs and the supervisord socket live")
    if extra:
        parser.add_argument(
            "--tiny",
            action="store_true",
            help="run on tiny random-weight models (built on first use): tries the plumbing",
        )
        parser.add_argument("--timeout", type=float, default=UP_TIMEOUT_S, help="seconds to wait for ready")
        parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.data_dir:
        env[ENV_DATA_DIR] = str(Path(args.data_dir).resolve())
    try:
        return args, load_config(args.config, env)
    except ConfigError as exc:
        print(f"E {prog}: {exc}", file=sys.stderr)
        return args, None


def cli_up(argv: list[str]) -> int:
    args, config = _common("up", argv, extra=True)
    if config is None:
        return 2
    return start(config, tiny=args.tiny, timeout_s=args.timeout, quiet=args.quiet)


def cli_down(argv: list[str]) -> int:
    _, config = _common("down", argv)
    return 2 if config is None else stop(config)


def cli_status(argv: list[str]) -> int:
    _, config = _common("status", argv)
    if config is None:
        return 2
    running, states = status(config)
    print(f"supervisord: {'running' if running else 'not running'} ({config.data_dir})")
    head = ("node", "process", "pid", "engine", "recv", "sent", "bad", "err")
    print("{:<11} {:<9} {:>7}  {:<8} {:>6} {:>6} {:>5} {:>5}  why".format(*head))
    worst = 0
    for st in states.values():
        c = st.counters or {}
        print(
            f"{st.name:<11} {st.process:<9} {st.pid or '-':>7}  {st.state:<8} "
            f"{c.get('received', '-'):>6} {c.get('emitted', '-'):>6} {c.get('dropped', '-'):>5} "
            f"{c.get('errors', '-'):>5}  {st.error}"
        )
        if st.state != "ready":
            worst = 1
    for line in journal_report(config.data_dir):
        print(line)
    disk = disk_report(config.data_dir)
    if disk:
        print(disk, file=sys.stderr)
        worst = max(worst, 1)
    return worst if running else 3


LOW_DISK_BYTES = 64 * 2**20  # less free than this in the data dir: status and doctor say so
RECENT_FAILURES = 5  # failed sentences status lists


def disk_report(data_dir: Path) -> str:
    """A line when the data dir's disk is (nearly) full: ingest refuses new text when it is."""
    import shutil

    try:
        free = shutil.disk_usage(data_dir).free
    except OSError:
        return ""
    if free < 2**20:
        why = "ingest refuses new text until there is"
        return f"E status: no space left in {data_dir} ({free} bytes free): {why}"
    if free < LOW_DISK_BYTES:
        return f"W status: little space left in {data_dir} ({free // 2**20} MiB free)"
    return ""


def journal_report(data_dir: Path) -> list[str]:
    """The journal in a few lines: open sentences, and the last ones given up, with why."""
    import sqlite3

    path = data_dir / "journal.sqlite3"
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            counts = dict(db.execute("SELECT state, COUNT(*) FROM sentences GROUP BY state").fetchall())
            failed = db.execute(
                "SELECT stream, seq, reason FROM sentences WHERE state='failed'"
                " ORDER BY done_ns DESC LIMIT ?",
                (RECENT_FAILURES,),
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return [f"journal: cannot read {path}: {exc}"]
    lines = ["journal: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))]
    lines += [f"  failed {stream}#{seq}: {reason}" for stream, seq, reason in failed]
    return lines
