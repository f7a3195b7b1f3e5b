"""The README matches the code: every `stream-tts ...` it shows names a real subcommand and real
flags, and the commands it shows that can run here do run, against a tiny pipeline."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.cli import COMMANDS
from tests.conftest import REPO, write_config

README = (REPO / "README.md").read_text(encoding="utf-8")
TWO_WORD = {"models", "hook", "voices"}  # subcommands with their own sub-subcommands
MENTION = re.compile(r"(?:\.venv/bin/)?stream-tts ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)((?: [^`|#\n]*)?)")


def mentions() -> Iterator[tuple[str, list[str]]]:
    """(command, flags) for every `stream-tts ...` the README shows."""
    for m in MENTION.finditer(README):
        words = m.group(1).split()
        if words[0] not in COMMANDS:
            continue
        cmd = " ".join(words[:2]) if words[0] in TWO_WORD and len(words) > 1 else words[0]
        flags = re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", m.group(2) + " " + " ".join(words[1:]))
        yield cmd, flags


def help_text(cmd: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "bus.cli", *cmd.split(), "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"`stream-tts {cmd} --help` failed: {proc.stderr}"
    return proc.stdout


def test_every_command_the_readme_shows_exists_with_its_flags() -> None:
    shown: dict[str, set[str]] = {}
    for cmd, flags in mentions():
        shown.setdefault(cmd, set()).update(flags)
    assert {
        "up",
        "down",
        "status",
        "say",
        "tap",
        "pipe",
        "hook",
        "segment",
        "models fetch",
        "doctor",
        "kana",
        "voices",
        "keys",
    } <= set(shown)
    missing: list[str] = []
    for cmd, shown_flags in sorted(shown.items()):
        text = help_text(cmd)
        missing += [
            f"stream-tts {cmd} {flag}"
            for flag in sorted(shown_flags)
            if flag != "--help" and flag not in text
        ]
    assert not missing, f"the README shows flags the code does not have: {missing}"


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    assert [ln.split("#")[0].strip() for ln in first_block.splitlines()[1:] if ln.strip()] == [
        "make run",
        "make test",
    ]


def test_config_keys_in_the_readme_are_the_ones_the_nodes_read() -> None:
    from nodes.ingest import ingest_keys
    from nodes.playback_config import PlaybackSettings
    from nodes.synthesize import SynthSettings
    from nodes.translate import DEFAULTS

    def table_keys(section: str) -> set[str]:
        block = README.split(f"| `[{section}]` key |", 1)[1].split("\n\n", 1)[0]
        return set(re.findall(r"^\| `([a-z_0-9]+)` \|", block, re.M))

    synth_keys = set(SynthSettings.__dataclass_fields__)
    assert table_keys("synthesize") == synth_keys
    assert set(DEFAULTS) <= table_keys("translate")

    def plain_table_keys(after: str) -> set[str]:  # a "| key | default | meaning |" table
        block = README.split(after, 1)[1].split("| key |", 1)[1].split("\n\n", 1)[0]
        return set(re.findall(r"^\| `([a-z_0-9]+)` \|", block, re.M))

    assert plain_table_keys("### Configuration (`[playback]`") == set(PlaybackSettings.__dataclass_fields__)
    # [ingest]: the text-shaping table plus the journal keys in the Configuration example
    example = README.split("[ingest]  ", 1)[1].split("```", 1)[0]
    journal_keys = set(re.findall(r"^([a-z_]+) = ", example, re.M))
    assert plain_table_keys("`[ingest]` options in the config file") | journal_keys == ingest_keys()


@pytest.mark.slow
def test_readme_commands_that_can_run_here_do(tmp_path: Path) -> None:
    """The runnable lines of the README's shell blocks, in a sandbox: a tiny pipeline on free ports."""
    data = tmp_path / "data"
    config = write_config(tmp_path / "config.toml", data)
    env = {
        "STREAM_TTS_CONFIG": str(config),
        "STREAM_TTS_DATA_DIR": str(data),
        "PATH": f"{REPO / '.venv/bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    (tmp_path / "reply.md").write_text(
        "# Done\n\nThe **build** passed. See [the log](https://ci.example.org/1).\n"
    )
    (tmp_path / "run.jsonl").write_text(
        json.dumps(
            {
                "type": "assistant",
                "session_id": "s",
                "uuid": "u1",
                "parent_tool_use_id": None,
                "message": {"id": "m1", "content": [{"type": "text", "text": "All green."}]},
            }
        )
        + "\n"
    )
    (tmp_path / "payload.json").write_text(
        json.dumps(
            {
                "hook_event_name": "Stop",
                "session_id": "s",
                "transcript_path": "",
                "last_assistant_message": "Done.",
            }
        )
    )

    import zmq.auth

    zmq.auth.create_certificates(
        str(tmp_path), "gpu-client"
    )  # the other machine's key, for `keys --authorize`

    def run(line: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
        )

    up = run("stream-tts up --tiny")
    try:
        assert up.returncode == 0, up.stderr
        ran: list[str] = []
        seen: set[tuple[str, ...]] = set()
        for block in re.findall(r"```sh\n(.*?)```", README, re.S):
            for raw in block.splitlines():
                line = raw.split(" #")[0].strip()
                if not re.match(r"^(\.venv/bin/)?stream-tts ", line):
                    continue
                line = line.removeprefix(".venv/bin/")  # the sandbox's PATH has .venv/bin
                words = shlex.split(line)
                if words[1] in ("up", "down", "pipe", "run") or words[1:3] == ["models", "fetch"]:
                    continue  # started above / needs stdin from claude / needs the network
                if words[1] == "tap":
                    line += " --seconds 1"
                if words[1:3] == ["hook", "install"]:
                    line += f" --settings {tmp_path / 'settings.json'}" if "--project" not in line else ""
                if words[1] == "doctor":
                    line += " --quiet" if "--quiet" not in line else ""
                    line += " --tiny" if "--tiny" not in line else ""
                same = tuple(sorted(shlex.split(line)))  # the README repeats some (doctor): run each once
                if same in seen:
                    continue
                seen.add(same)
                r = run(line)
                why = f"README line `{raw.strip()}` failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
                assert r.returncode == 0, why  # doctor included: the tiny set-up is healthy
                ran.append(line)
        assert len(ran) >= 8, ran
        assert any("segment reply.md" in ln for ln in ran)
    finally:
        run("stream-tts down", timeout=60)
