"""The pipeline's shape, said once: the programs supervisord runs, what starts each, and which
endpoints each one owns (binds) and sends to.

Everything that lists nodes reads this: the `stream-tts node` command, `up`/`status`
(supervision), `doctor` (who owns a port), each node's own sockets (`Node.inputs`), and a test
that checks supervisord.conf against it. Entry points are "module:function" strings resolved
only when a program starts, so the bus knows the nodes' names without importing them.

Adding a node: its package under nodes/, one Program here, its endpoints in
bus/endpoints.py LAYOUT (when it owns new ones), and its [program:NAME] block in supervisord.conf.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Program:
    """One process of the pipeline under supervisord."""

    name: str  # supervisord's program name and the node's name on the tap
    args: tuple[str, ...]  # the `stream-tts` arguments that run it (supervisord.conf's command)
    entry: str  # "module:function(argv) -> exit status" that those arguments run
    binds: tuple[str, ...]  # endpoints it owns and reads (the stable addresses)
    sends: tuple[str, ...]  # endpoints it connects to and sends on
    priority: int  # supervisord's start order: lower first
    stop_wait_s: int  # supervisord's stopwaitsecs: time to finish cleanly after SIGTERM


TAP = Program(
    name="tap",
    args=("tap-proxy",),
    entry="stream_tts.commands.tap:cli_proxy",
    binds=("tap_in", "tap_out"),
    sends=(),
    priority=10,
    stop_wait_s=5,
)
NODES: tuple[Program, ...] = (
    Program(
        name="ingest",
        args=("node", "ingest"),
        entry="nodes.ingest.node:main",
        binds=("text", "acks"),
        sends=("translate", "control"),  # control: ingest owns it, a PUB (bus/endpoints.py)
        priority=20,
        stop_wait_s=10,
    ),
    Program(
        name="translate",
        args=("node", "translate"),
        entry="nodes.translate.entry:main",  # llama.cpp's libraries before pyzmq's (see it)
        binds=("translate",),
        sends=("synthesize", "acks"),
        priority=30,
        stop_wait_s=10,
    ),
    Program(
        name="synthesize",
        args=("node", "synthesize"),
        entry="nodes.synthesize.node:main",
        binds=("synthesize",),
        sends=("playback", "acks"),
        priority=30,
        stop_wait_s=10,
    ),
    Program(
        name="playback",
        args=("node", "playback"),
        entry="nodes.playback.node:main",
        binds=("playback",),
        sends=("acks",),
        priority=20,
        stop_wait_s=10,
    ),
)
PROGRAMS: tuple[Program, ...] = (TAP, *NODES)
NODE_NAMES: tuple[str, ...] = tuple(p.name for p in NODES)
OWNED_BY_SENDER = ("control",)  # endpoints bound by the program that sends on them (a PUB)


def node(name: str) -> Program:
    """The node called `name`, or KeyError naming the ones there are."""
    for p in NODES:
        if p.name == name:
            return p
    raise KeyError(f"no node {name!r}; nodes: {', '.join(NODE_NAMES)}")


def owner(endpoint: str) -> str:
    """The program that binds `endpoint`."""
    for p in PROGRAMS:
        if endpoint in p.binds or (endpoint in OWNED_BY_SENDER and endpoint in p.sends):
            return p.name
    raise KeyError(f"no program owns endpoint {endpoint!r}")
