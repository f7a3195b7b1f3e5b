"""`stream-tts doctor`: is this machine ready to speak, and if not, what to type to fix it.

Checks Python and packages, llama.cpp's and torch's GPU backends, both models (present and
loadable, each loaded in a subprocess with a timeout), the voice synthesize will speak with,
the ports and sockets (free, or held by our own nodes as their heartbeats on the tap show), the
audio device (a short tone unless --quiet), the pipeline under supervisord, endpoints on other
machines, and what other accounts here can reach (the bus, the data dir). Prints one table of
ok / warning / error rows, each error with its fix; exits 1 when any row is an error.
The heavy libraries are never imported here: stream_tts/doctor/checks.py probes them in subprocesses.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from bus.config import ENV_DATA_DIR, Config, ConfigError, add_config_option, load_config
from stream_tts.doctor import bus_checks as db
from stream_tts.doctor import checks as dc
from stream_tts.doctor.checks import ERROR, OK, WARN, Check
from stream_tts.setup_plan import this_machine

TAP_LISTEN_S = 1.6  # a little more than one heartbeat
STYLE = {OK: "green", WARN: "yellow", ERROR: "bold red"}


def run_checks(config: Config, play: bool = True, load_timeout_s: float = dc.LOAD_TIMEOUT_S) -> list[Check]:
    """Every check, the slow ones (subprocess probes) side by side."""
    plan = this_machine()
    rows: list[Check] = [dc.check_python(), dc.check_packages()]
    gguf: Path | None = None
    voice: Path | None = None
    try:
        gguf, voice = dc.model_paths(config)
    except Exception as exc:  # a bad [translate]/[synthesize] value, or a node module that does not import
        rows.append(
            Check("models", ERROR, f"cannot tell which models the config wants: {exc}", "fix the config")
        )
    jobs: list[Callable[[], Check | list[Check]]] = [
        lambda: dc.check_llama_backend(plan),
        lambda: dc.check_torch_backend(plan),
        lambda: dc.check_audio(config, play),
    ]
    if gguf is not None and voice is not None:
        g, v = gguf, voice
        jobs += [
            lambda: dc.check_translator(config, g, load_timeout_s),
            lambda: dc.check_voice(config, v, load_timeout_s),
        ]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
        beats = db.heartbeats(config, TAP_LISTEN_S)  # meanwhile, listen to the tap
        rows += [c for f in futures for c in _as_list(f.result())]
    rows += db.check_ports(config, beats)
    rows += [db.check_supervisor(config, beats), db.check_endpoints(config)]
    rows += [db.check_private_bus(config), db.check_private_files(config), check_disk(config)]
    return rows


def check_disk(config: Config) -> Check:
    """Room in the data dir: the journal must grow for ingest to take text."""
    from stream_tts.supervise import LOW_DISK_BYTES, disk_report

    line = disk_report(config.data_dir)
    if not line:
        return Check("disk", OK, f"room in {config.data_dir}")
    level = ERROR if line.startswith("E") else WARN
    need = LOW_DISK_BYTES // 2**20
    fix = f"free space on the disk of {config.data_dir} (at least {need} MiB), or move data_dir"
    return Check("disk", level, line.split(": ", 1)[1], fix)


def _as_list(x: Check | list[Check]) -> list[Check]:
    return x if isinstance(x, list) else [x]


def print_table(rows: list[Check], title: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left", show_lines=False)
    for col in ("check", "status", "detail", "fix"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(escape(r.name), f"[{STYLE[r.status]}]{r.status}[/]", escape(r.detail), escape(r.fix))
    Console(width=max(Console().width, 140)).print(table)


def summary(rows: list[Check]) -> str:
    errors = [r for r in rows if r.status == ERROR]
    warns = [r for r in rows if r.status == WARN]
    if errors:
        counts = f"{len(errors)} error(s), {len(warns)} warning(s)"
        return f"E doctor: {counts}: fix the errors above, then run stream-tts doctor again"
    return f"I doctor: no errors ({len(warns)} warning(s)). Next: stream-tts up, then stream-tts say 'Hello.'"


def tiny_config_path(config: Config) -> Path:
    """The `up --tiny` config for this data dir; the tiny models are built in a subprocess (torch)."""
    from stream_tts.tiny import STAMP, tiny_config

    folder = config.data_dir / "tiny-models"
    if not (folder / STAMP).exists():
        print(f"I doctor: writing tiny models into {folder} ...", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, "-m", "stream_tts.cli", "models", "tiny", str(folder)],
            check=True,
            capture_output=True,
        )
    return tiny_config(config, folder)


def cli_doctor(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stream-tts doctor", description=__doc__.split("\n\n")[0])
    add_config_option(parser)
    parser.add_argument("--data-dir", help="the pipeline's data directory")
    parser.add_argument("--tiny", action="store_true", help="check the set-up `stream-tts up --tiny` runs")
    parser.add_argument("--quiet", action="store_true", help="do not play the test tone")
    parser.add_argument("--json", action="store_true", help="one JSON object per check, no table")
    parser.add_argument(
        "--load-timeout", type=float, default=dc.LOAD_TIMEOUT_S, help="seconds per model load"
    )
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.data_dir:
        env[ENV_DATA_DIR] = str(Path(args.data_dir).resolve())
    try:
        config = load_config(args.config, env)
        if args.tiny:
            config = load_config(tiny_config_path(config), {**env, ENV_DATA_DIR: str(config.data_dir)})
    except (ConfigError, subprocess.CalledProcessError) as exc:
        print(f"E doctor: {exc}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    rows = run_checks(config, play=not args.quiet, load_timeout_s=args.load_timeout)
    if args.json:
        for r in rows:
            print(json.dumps(asdict(r)))
    else:
        print_table(
            rows, f"stream-tts doctor ({config.path or 'default config'}, {time.monotonic() - t0:.1f} s)"
        )
    print(summary(rows), file=sys.stderr)
    return 1 if any(r.status == ERROR for r in rows) else 0
