"""The README and docs/ match the code: every `stream-tts ...` they show names a real subcommand
and real flags, the config-key tables list exactly the keys the nodes read, every relative link
leads to a file, and the commands they show that can run here do run, against a tiny pipeline."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_tts.cli import COMMANDS
from tests.conftest import REPO, write_config

README_PATH = REPO / "README.md"
README = README_PATH.read_text(encoding="utf-8")
DOC_PATHS = [README_PATH, *sorted((REPO / "docs").glob("*.md"))]  # the README first, then docs/
DOCS = {path: path.read_text(encoding="utf-8") for path in DOC_PATHS}
CONFIG_DOC = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")  # every key table
README_MAX_LINES = 250
TWO_WORD = {"models", "hook", "voices", "eval"}  # subcommands with their own sub-subcommands
MENTION = re.compile(r"(?:\.venv/bin/)?stream-tts ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)((?: [^`|#\n]*)?)")


def mentions() -> Iterator[tuple[str, list[str]]]:
    """(command, flags) for every `stream-tts ...` the README and docs/ show."""
    for text in DOCS.values():
        for m in MENTION.finditer(text):
            words = m.group(1).split()
            if words[0] not in COMMANDS:
                continue
            cmd = " ".join(words[:2]) if words[0] in TWO_WORD and len(words) > 1 else words[0]
            flags = re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", m.group(2) + " " + " ".join(words[1:]))
            yield cmd, flags


def shell_lines() -> Iterator[tuple[Path, str]]:
    """(file, line) for each line of the ```sh blocks of the README and docs/, in order."""
    for path, text in DOCS.items():
        for block in re.findall(r"```sh\n(.*?)```", text, re.S):
            for raw in block.splitlines():
                yield path, raw


def help_text(cmd: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", *cmd.split(), "--help"],
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
    assert not missing, f"the README or docs/ show flags the code does not have: {missing}"


def test_readme_command_table_lists_every_subcommand() -> None:
    table = README.split("| command | what it does |", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"^\| `stream-tts ([a-z][a-z-]*)", table, re.M))
    # a row may name two: `stream-tts pause` / `stream-tts resume`
    listed |= set(re.findall(r"/ `stream-tts ([a-z][a-z-]*)", table))
    assert listed == set(COMMANDS), f"missing: {set(COMMANDS) - listed}; unknown: {listed - set(COMMANDS)}"


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    assert [ln.split("#")[0].strip() for ln in first_block.splitlines()[1:] if ln.strip()] == [
        "make run",
        "make test",
    ]


def test_config_key_tables_are_the_keys_the_nodes_read() -> None:
    from nodes.ingest.settings import ingest_keys
    from nodes.playback.settings import PlaybackSettings
    from nodes.synthesize.settings import SynthSettings
    from nodes.translate.settings import DEFAULTS

    def table_keys(section: str) -> set[str]:  # a "| `[section]` key | default | meaning |" table
        header = f"| `[{section}]` key |"
        holding = [path.name for path, text in DOCS.items() if header in text]
        assert holding == ["configuration.md"], f"[{section}]'s table is in {holding}, not configuration.md"
        block = CONFIG_DOC.split(header, 1)[1].split("\n\n", 1)[0]
        keys = re.findall(r"^\| `([a-z_0-9]+)` \|", block, re.M)
        assert len(keys) == len(set(keys)), f"[{section}] lists a key twice: {keys}"
        return set(keys)

    assert table_keys("ingest") == ingest_keys()
    assert table_keys("translate") == set(DEFAULTS) | {"model"}  # model: an explicit path, no default
    assert table_keys("synthesize") == set(SynthSettings.__dataclass_fields__)
    assert table_keys("playback") == set(PlaybackSettings.__dataclass_fields__)


def test_readme_is_short_and_every_relative_link_leads_somewhere() -> None:
    lines = README.count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the rest belongs in docs/"
    link = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
    broken: list[str] = []
    for path, text in DOCS.items():
        prose = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))  # no code
        for target in link.findall(prose):
            if re.match(r"^[a-z][a-z+.-]*:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(REPO)}: ({target})"
            if not dest.exists():
                broken.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text(encoding="utf-8")):
                broken.append(f"{where}: no heading #{anchor}")
    assert not broken, "\n".join(broken)


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    out: set[str] = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n, base = 1, slug
        while slug in out:
            slug, n = f"{base}-{n}", n + 1
        out.add(slug)
    return out


@pytest.mark.slow
def test_readme_commands_that_can_run_here_do(tmp_path: Path) -> None:
    """The runnable lines of the shell blocks of the README and docs/, in a sandbox: a tiny
    pipeline on free ports."""
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
        for path, raw in shell_lines():
            line = raw.split(" #")[0].strip()
            if not re.match(r"^(\.venv/bin/)?stream-tts ", line):
                continue
            line = line.removeprefix(".venv/bin/")  # the sandbox's PATH has .venv/bin
            words = shlex.split(line)
            if words[1] in ("up", "down", "pipe", "run", "eval") or words[1:3] == ["models", "fetch"]:
                continue  # started above / needs stdin from claude / needs the network
            if words[1] == "tap":
                line += " --seconds 1"
            if words[1:3] == ["hook", "install"]:
                line += f" --settings {tmp_path / 'settings.json'}" if "--project" not in line else ""
            if words[1] == "doctor":
                line += " --quiet" if "--quiet" not in line else ""
                line += " --tiny" if "--tiny" not in line else ""
            same = tuple(sorted(shlex.split(line)))  # some lines repeat (doctor): run each once
            if same in seen:
                continue
            seen.add(same)
            r = run(line)
            why = f"{path.name} line `{raw.strip()}` failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
            assert r.returncode == 0, why  # doctor included: the tiny set-up is healthy
            ran.append(line)
        assert len(ran) >= 8, ran
        assert any("segment reply.md" in ln for ln in ran)
    finally:
        run("stream-tts down", timeout=60)
