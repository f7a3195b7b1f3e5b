"""bus/topology.py is the one list of the pipeline's programs: supervisord.conf, the CLI, the
endpoint layout and each node's own sockets all agree with it."""

from __future__ import annotations

import configparser
import importlib

from bus import topology
from bus.endpoints import LAYOUT
from bus.node import Node
from stream_tts.cli import COMMANDS, NODES
from tests.conftest import REPO


def conf() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    parser.read(REPO / "supervisord.conf", encoding="utf-8")
    return parser


def test_supervisord_conf_runs_exactly_the_registered_programs() -> None:
    parser = conf()
    programs = [s.removeprefix("program:") for s in parser.sections() if s.startswith("program:")]
    assert programs == [p.name for p in topology.PROGRAMS]
    for p in topology.PROGRAMS:
        section = parser[f"program:{p.name}"]
        assert section["command"] == f"%(here)s/.venv/bin/python -m stream_tts.cli {' '.join(p.args)}"
        assert int(section["priority"]) == p.priority, p.name
        assert int(section["stopwaitsecs"]) == p.stop_wait_s, p.name
        assert section["autorestart"] == "true" and section["stdout_logfile"].endswith(f"/{p.name}.log")


def test_every_program_command_is_a_cli_command_that_reaches_its_entry() -> None:
    for p in topology.PROGRAMS:
        assert p.args[0] in COMMANDS, p
        if p.args[0] == "node":
            assert NODES[p.args[1]] == p.entry
        else:
            assert COMMANDS[p.args[0]][0] == p.entry
        module, func = p.entry.split(":")
        assert callable(getattr(importlib.import_module(module), func)), p.entry


def test_each_endpoint_has_one_owner_and_each_node_reads_what_it_owns() -> None:
    owners = {name: topology.owner(name) for name in LAYOUT}
    assert set(owners) == set(LAYOUT)
    bound = [e for p in topology.PROGRAMS for e in p.binds]
    assert len(bound) == len(set(bound))  # nobody binds another's endpoint
    for p in topology.NODES:
        module = importlib.import_module(p.entry.split(":")[0].replace(".entry", ".node"))
        cls = next(
            c
            for c in vars(module).values()
            if isinstance(c, type) and issubclass(c, Node) and c is not Node and c.name == p.name
        )
        assert cls.inputs == p.binds, p.name
        assert set(cls.routes.values()) <= set(p.sends), p.name  # what it sends goes where it connects
        assert set(p.sends) <= set(LAYOUT) and set(p.binds) <= set(LAYOUT)
