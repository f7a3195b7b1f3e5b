"""`stream-tts`: one entry point, one subcommand per job.

Each subcommand is a function `f(argv: list[str]) -> int` named here as "module:function" and
imported only when it is run, so `stream-tts say` never loads torch or llama.cpp. Every command
runs under a umask of 077: what it creates is this account's alone (bus/private.py).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from bus import topology
from bus.private import private_umask

# name -> ("module:function", one-line help). Keep sorted by how often people type them.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("stream_tts.supervise:cli_up", "start the pipeline under supervisord (--tiny: tiny models)"),
    "down": ("stream_tts.supervise:cli_down", "stop the pipeline"),
    "status": ("stream_tts.supervise:cli_status", "every node's process and engine state"),
    "say": ("stream_tts.commands.say:cli_say", "speak TEXT (or - for stdin)"),
    "pipe": ("stream_tts.claude.pipe:cli_pipe", "speak Claude Code's stream-json (claude -p ... | pipe)"),
    "hook": (
        "stream_tts.claude.hook:cli_hook",
        "Claude Code hook (JSON on stdin); `hook install` sets it up",
    ),
    "flush": (
        "stream_tts.claude.pipe:cli_flush",
        "speak what is held back now (--stream S); pipe and hook do it per turn",
    ),
    "segment": (
        "stream_tts.claude.pipe:cli_segment",
        "print the sentences ingest would send for FILE (--format)",
    ),
    "tap": ("stream_tts.commands.tap:cli_tap", "print every bus event as JSON lines"),
    "keys": ("stream_tts.commands.keys:cli_keys", "make CURVE keys for a bus that leaves this machine"),
    "tap-proxy": (
        "stream_tts.commands.tap:cli_proxy",
        "run the tap's XSUB/XPUB proxy (supervisord runs this)",
    ),
    "node": ("stream_tts.cli:cli_node", "run one node in the foreground: node NAME (supervisord runs these)"),
    "models": ("stream_tts.commands.models:cli_models", "models tiny DIR | list | fetch"),
    "eval": (
        "stream_tts.eval.translate:cli_eval",
        "eval translate: how well your translator(s) translate (chrF, kept tokens, ms), side by side",
    ),
    "doctor": (
        "stream_tts.doctor.report:cli_doctor",
        "check set-up, models, GPU, ports, audio; says how to fix each",
    ),
    "run": ("stream_tts.first_run:cli_run", "first run: fetch models, doctor, up, and a spoken greeting"),
    "stop": (
        "stream_tts.commands.playback:cli_stop",
        "stop speaking now and drop what is queued (every stage)",
    ),
    "pause": ("stream_tts.commands.playback:cli_pause", "pause playback where it is"),
    "resume": ("stream_tts.commands.playback:cli_resume", "resume playback after pause"),
    "volume": (
        "stream_tts.commands.playback:cli_volume",
        "set playback volume: volume PERCENT (100 = as synthesized)",
    ),
    "mode": (
        "stream_tts.commands.playback:cli_mode",
        "mode full|brief [--stream S]: every sentence, or a summary of a long answer",
    ),
    "speed": (
        "stream_tts.commands.playback:cli_speed",
        "speak faster or slower: speed 1.5 [--stream S] (0.5..2, pitch unchanged)",
    ),
    "devices": (
        "stream_tts.commands.playback:cli_devices",
        "list audio output devices ([playback] device picks one)",
    ),
    "voices": (
        "stream_tts.commands.voices:cli_voices",
        "list synthesis voices; voices add NAME WAV TEXT clones one",
    ),
    "kana": ("stream_tts.commands.kana:cli_kana", "print the kana the synthesizer receives for TEXT"),
    "bench": ("bench.ttfa:cli_bench", "time to first audio per stage (p50/p95); --stages composes it"),
}

NODES = {p.name: p.entry for p in topology.NODES}


def _load(target: str) -> Callable[[list[str]], int]:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def cli_node(argv: list[str]) -> int:
    usage_line = f"usage: stream-tts node {{{','.join(NODES)}}} [--config FILE]"
    if argv[:1] in (["-h"], ["--help"]):
        print(f"{usage_line}\n\nRun one node in the foreground (supervisord runs these).")
        return 0
    if not argv or argv[0] not in NODES:
        print(usage_line, file=sys.stderr)
        return 2
    return _load(NODES[argv[0]])(argv[1:])


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: stream-tts COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`stream-tts COMMAND --help` for each command's options."]
    return "\n".join(lines)


def _bus_refusals() -> tuple[type[Exception], ...]:
    """The errors that refuse a socket, imported only when an exception is being matched (the bus
    modules import pyzmq, which `segment` or `kana` never need)."""
    from bus.endpoints import EndpointError
    from bus.security import SecurityError

    return (EndpointError, SecurityError)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"stream-tts: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    private_umask()  # whatever any command writes (journal, logs, WAVs, hook state): 0600 / 0700
    try:
        return _load(COMMANDS[name][0])(rest)
    except KeyboardInterrupt:
        return 130
    except _bus_refusals() as exc:  # a bus folder that is not private, no CURVE keys, ...
        print(f"E {name}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
