"""`stream-tts hook`: speak what Claude Code said, from its Stop / SubagentStop / Notification hooks.

Claude Code runs the hook with one JSON object on stdin and waits for it, so the hook must never
slow the agent down or fail it: the foreground process only reads stdin, forks a detached child
and exits 0, all within a few tens of milliseconds (only the standard library is imported before
the fork). The child finds the text, drops a repeat, publishes it with stream = session_id, and
writes any error to <data_dir>/log/hook.log.

What is said (docs/claude-code.md):
- Stop, SubagentStop: `last_assistant_message` (Claude Code >= 2.1.47). Older versions do not send
  it; then the last assistant message is read from the transcript file the payload names (for
  SubagentStop the sub-agent's own `agent_transcript_path`, whose entries are all side chain). That
  file can lag one turn behind when the hook fires, so the read is retried (TRANSCRIPT_WAIT_S at
  most) until the last message differs from the one this session last spoke from that transcript.
  Only a regular file is read (a FIFO would block the open for ever, a device never end), at most
  TRANSCRIPT_MAX_BYTES of its end; and the child's whole life is bounded (CHILD_MAX_S), whatever
  blocks it.
- Notification: its `message` ("Claude needs your permission to use Bash"), every time it comes.
- Stop fires again for the same turn when a Stop hook blocks, and `stop_hook_active` cannot be
  trusted to tell: the same Stop/SubagentStop text in the same session is never published twice (a
  hash of the text per session, in <data_dir>/hook-state.json, bounded, under a file lock).
- After the text, a Flush for the session: the answer is complete, so ingest lets its last sentence
  go even without final punctuation, and playback starts what it holds without waiting.

`stream-tts hook install [--project]` adds the hook to ~/.claude/settings.json (or
./.claude/settings.json), keeping everything there; running it twice changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bus.config import add_config_option

HOOK_EVENTS = ("Stop", "SubagentStop", "Notification")
DEDUPED_EVENTS = ("Stop", "SubagentStop")  # Stop re-fires for one turn; a Notification repeats on purpose
MAX_STDIN_BYTES = 16 * 1024 * 1024  # a hook payload carries one message; more is not a payload
STDIN_WAIT_S = 0.05  # stdin that gives nothing for this long is not a hook payload
TRANSCRIPT_WAIT_S = 1.5  # how long an old CLI's lagging transcript is re-read (in the child)
TRANSCRIPT_POLL_S = 0.05
TRANSCRIPT_TAIL_BYTES = 256 * 1024  # read from the end of the transcript first, doubling as needed
TRANSCRIPT_MAX_BYTES = 16 * 1024 * 1024
PUBLISH_WAIT_S = 2.0  # the child's wait for ingest (the agent is not waiting for the child)
CHILD_MAX_S = 10.0  # the child's whole life (transcript wait + publish + close): then it gives up
STATE_FILE = "hook-state.json"
STATE_SESSIONS = 200  # sessions remembered; the least recently used go first
STATE_HASHES = 64  # texts remembered per session
SETTINGS_TIMEOUT_S = 10  # the hook's timeout written into settings.json


class HookError(ValueError):
    """A payload or transcript this hook cannot use; logged, never raised to Claude Code."""


# ---- what to say -------------------------------------------------------------------------------
def hook_stream(payload: Mapping[str, Any]) -> str:
    session = payload.get("session_id")
    return session if isinstance(session, str) and session else "claude"


def hook_text(
    payload: Mapping[str, Any], last_transcript_id: str | None = None, wait_s: float = TRANSCRIPT_WAIT_S
) -> tuple[str, str | None]:
    """(text to say, id of the transcript message it came from or None) for one hook payload."""
    event = payload.get("hook_event_name")
    if event == "Notification":
        message = payload.get("message")
        return (message if isinstance(message, str) else ""), None
    if event not in ("Stop", "SubagentStop"):
        raise HookError(f"hook event {event!r} is not one of {', '.join(HOOK_EVENTS)}")
    last = payload.get("last_assistant_message")
    if isinstance(last, str):
        return last, None
    key = transcript_key(payload)
    path = payload.get(key)
    if not isinstance(path, str) or not path:
        raise HookError(f"{event} payload has neither last_assistant_message nor {key}")
    side_chain = key == "agent_transcript_path"
    return read_transcript(Path(path).expanduser(), last_transcript_id, wait_s, side_chain)


def transcript_key(payload: Mapping[str, Any]) -> str:
    """The payload field naming the transcript to read: a sub-agent's own, or the session's."""
    if payload.get("hook_event_name") == "SubagentStop" and payload.get("agent_transcript_path"):
        return "agent_transcript_path"
    return "transcript_path"


def read_transcript(
    path: Path, last_id: str | None, wait_s: float, side_chain: bool = False
) -> tuple[str, str | None]:
    """The text of the transcript's last assistant message, waiting (bounded) while the file still
    ends with `last_id` (the message spoken last time) or with no assistant message yet.
    `side_chain`: the file is a sub-agent's own transcript (all of it side chain)."""
    deadline = time.monotonic() + wait_s
    text, msg_id = "", None
    while True:
        try:
            found = last_assistant_message(path, side_chain)
        except OSError as exc:
            raise HookError(f"cannot read transcript {path}: {exc}") from None
        if found is not None:
            text, msg_id = found
            if msg_id is None or msg_id != last_id:
                return text, msg_id
        if time.monotonic() >= deadline:
            return (text, msg_id) if msg_id != last_id else ("", msg_id)
        time.sleep(TRANSCRIPT_POLL_S)


def last_assistant_message(path: Path, side_chain: bool = False) -> tuple[str, str | None] | None:
    """(text, message id) of the last assistant message in a transcript .jsonl; None when the last
    message entry is not the assistant's (the current answer is not written yet). A session's
    transcript skips side-chain entries; a sub-agent's own (`side_chain`) is made of nothing else."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        tail = TRANSCRIPT_TAIL_BYTES
        while True:
            f.seek(max(0, size - tail))
            data = f.read(tail)
            lines = data.split(b"\n")
            if size > tail:
                lines = lines[1:]  # the first one is cut
            found = _walk_back(lines, side_chain)
            if found is not _MORE or size <= tail or tail >= TRANSCRIPT_MAX_BYTES:
                return None if found is _MORE else found  # type: ignore[return-value]
            tail = min(tail * 4, TRANSCRIPT_MAX_BYTES)


def open_regular(path: Path) -> int:
    """A read-only fd of `path`, which must be a regular file: a FIFO blocks open() until a writer
    comes (for ever, from a hook), a device or /proc file may never end. Checked before the open,
    which is non-blocking (a FIFO put there in between cannot hold it), and again on the fd."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise HookError(f"transcript {path} is not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise HookError(f"transcript {path} is not a regular file")
    return fd


_MORE = object()


def _walk_back(lines: list[bytes], side_chain: bool = False) -> object:
    """From the end: skip entries that are not messages, meta, or side chains (unless `side_chain`:
    a sub-agent's own transcript); collect the text blocks of the entries that share the last
    assistant message's id. _MORE: no message entry in `lines`, read further back."""
    texts: list[str] = []
    msg_id: str | None = None
    for raw in reversed(lines):
        entry = _json(raw)
        if entry is None or entry.get("type") not in ("user", "assistant"):
            continue
        if entry.get("isMeta") or (entry.get("isSidechain") and not side_chain):
            continue
        message = entry.get("message")
        if not isinstance(message, dict):
            continue
        this_id = message.get("id") if isinstance(message.get("id"), str) else entry.get("uuid")
        if entry["type"] == "user" and msg_id is None:
            return None  # the last message is the user's: the answer is not written yet
        if entry["type"] == "user" or (msg_id is not None and this_id != msg_id):
            break
        msg_id = this_id
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            block_texts = [
                b["text"]
                for b in content
                if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
            ]
            texts.append("\n\n".join(block_texts))
    if msg_id is None:
        return _MORE
    return "\n\n".join(t for t in reversed(texts) if t), msg_id


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: a line nested thousands deep
        return None
    return obj if isinstance(obj, dict) else None


# ---- repeat suppression ---------------------------------------------------------------------
def text_hash(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:32]


class HookState:
    """Per-session memory of what was spoken, in one small JSON file under an exclusive lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd = -1
        self.data: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> HookState:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(str(self.path) + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            self.data = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            self.data = {}
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            sessions = sorted(self.data.items(), key=lambda kv: kv[1].get("t", 0))[-STATE_SESSIONS:]
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(dict(sessions)), encoding="utf-8")
            os.replace(tmp, self.path)
        finally:
            os.close(self._lock_fd)

    def session(self, stream: str) -> dict[str, Any]:
        entry = self.data.get(stream)
        if not isinstance(entry, dict) or not isinstance(entry.get("hashes"), list):
            entry = {"hashes": []}
            self.data[stream] = entry
        entry["t"] = time.time()
        return entry

    def seen(self, stream: str, digest: str) -> bool:
        return digest in self.session(stream)["hashes"]

    def remember(self, stream: str, digest: str) -> None:
        hashes: list[str] = self.session(stream)["hashes"]
        hashes.append(digest)
        del hashes[:-STATE_HASHES]

    def forget(self, stream: str, digest: str) -> None:
        hashes: list[str] = self.session(stream)["hashes"]
        if digest in hashes:
            hashes.remove(digest)


# ---- the hook ---------------------------------------------------------------------------------
def run_hook(payload: Mapping[str, Any], config_path: str | None) -> str:
    """Find, de-duplicate and publish what one hook call says; returns what was done (for the log)."""
    from bus.client import IngestUnavailable, Publisher
    from bus.config import load_config
    from bus.messages import Cancel, Flush

    config = load_config(config_path)
    stream = hook_stream(payload)
    event = payload.get("hook_event_name")
    # The message spoken last from this kind of transcript: a sub-agent's must not stand in for
    # the session's, or a lagging session transcript would pass for a new answer.
    id_key = "agent_transcript_id" if transcript_key(payload) == "agent_transcript_path" else "transcript_id"
    state_path = config.data_dir / STATE_FILE
    with HookState(state_path) as state:
        last_id = state.session(stream).get(id_key)
    text, msg_id = hook_text(payload, last_id if isinstance(last_id, str) else None)
    if not text.strip():
        return f"{stream}: nothing to say"
    digest = text_hash(text) if event in DEDUPED_EVENTS else None
    with HookState(state_path) as state:
        if msg_id is not None:
            state.session(stream)[id_key] = msg_id
        if digest is not None:
            if state.seen(stream, digest):
                return f"{stream}: already spoken ({len(text)} chars), skipped"
            state.remember(stream, digest)
    # The child leaves with os._exit, which would drop what ZeroMQ's I/O thread has not written
    # yet: the Publisher's close terminates its own context, which waits for it (bus/client.py).
    try:
        with Publisher(config, wait_s=PUBLISH_WAIT_S) as pub:
            if event == "Stop" and config.section("ingest").get("cancel_on_new_turn", True):
                # A new answer: whatever of the session's last one is still queued is stale.
                pub.control(Cancel(stream=stream, reason="new agent turn"))
            pub.send(stream, text, final=True, source="hook")  # in pieces, when long
            pub.control(Flush(stream=stream))  # the answer is whole: nothing of it waits
    except IngestUnavailable:
        if digest is not None:
            with HookState(state_path) as state:
                state.forget(stream, digest)  # not spoken: a later call may say it
        raise
    return f"{stream}: published {len(text)} chars ({event})"


def read_payload(fd: int, wait_s: float = STDIN_WAIT_S) -> bytes:
    """All of stdin, but never blocking longer than `wait_s` for data that does not come."""
    import select

    chunks: list[bytes] = []
    total = 0
    deadline = time.monotonic() + wait_s
    while total <= MAX_STDIN_BYTES:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise HookError(f"stdin gave no complete payload within {wait_s * 1000:.0f} ms")
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
    raise HookError(f"stdin payload over {MAX_STDIN_BYTES} bytes")


class _Log:
    """Appends lines to <data_dir>/log/hook.log; never raises."""

    def __init__(self, config_path: str | None) -> None:
        self.path: Path | None = None
        self.config_path = config_path

    def __call__(self, line: str) -> None:
        try:
            if self.path is None:
                from bus.config import load_config

                self.path = load_config(self.config_path).data_dir / "log" / "hook.log"
                self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid={os.getpid()} {line}\n")
        except Exception:
            pass


class _TimeUp(Exception):
    """CHILD_MAX_S passed: raised from SIGALRM wherever the child was."""


def _time_up(_signum: int, _frame: Any) -> None:
    raise _TimeUp


def _child(raw: bytes, config_path: str | None) -> None:
    import signal

    log = _Log(config_path)
    with contextlib.suppress(ValueError):  # ValueError: not the main thread (a caller's own use)
        signal.signal(signal.SIGALRM, _time_up)
        signal.setitimer(signal.ITIMER_REAL, CHILD_MAX_S)  # whatever blocks (a read, a send): not for ever
    try:
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            raise HookError("payload is not a JSON object")
        log("I " + run_hook(payload, config_path))
    except _TimeUp:
        log(f"E gave up after {CHILD_MAX_S:g} s (CHILD_MAX_S)")
    except Exception as exc:
        log(f"E {type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(ValueError):
            signal.setitimer(signal.ITIMER_REAL, 0)


def _detach() -> bool:
    """Fork; True in the detached child (own session, stdio on /dev/null), False in the parent."""
    if os.fork() != 0:
        return False
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    return True


def cli_hook(argv: list[str]) -> int:
    """`stream-tts hook [--config F] [--foreground]` (Claude Code runs this) | `hook install ...`."""
    if argv[:1] == ["install"]:
        return cli_install(argv[1:])
    if argv[:1] in (["-h"], ["--help"]):
        print(
            "usage: stream-tts hook [--config FILE] [--foreground]  (a Claude Code hook's JSON on stdin)\n"
            "       stream-tts hook install [--project] [--subagents] [--settings FILE] [--config FILE]"
        )
        return 0
    config_path: str | None = None
    foreground = "--foreground" in argv
    if "--config" in argv and argv.index("--config") + 1 < len(argv):
        config_path = argv[argv.index("--config") + 1]
    try:
        raw = read_payload(sys.stdin.fileno())
    except (HookError, OSError, ValueError) as exc:
        _Log(config_path)(f"E {exc}")
        return 0
    if foreground:
        _child(raw, config_path)
        return 0
    try:
        if not _detach():
            return 0
    except OSError as exc:
        _Log(config_path)(f"E cannot fork: {exc}")
        return 0
    try:
        _child(raw, config_path)
    finally:
        os._exit(0)


# ---- hook install -------------------------------------------------------------------------------
def hook_command(config_path: str | None) -> str:
    """The command line Claude Code runs: this venv's `stream-tts hook`, with the config if any."""
    import shlex

    script = Path(sys.executable).parent / "stream-tts"
    cmd = shlex.quote(str(script)) if script.exists() else f"{shlex.quote(sys.executable)} -m stream_tts.cli"
    cmd += " hook"
    if config_path:
        cmd += " --config " + shlex.quote(str(Path(config_path).expanduser().resolve()))
    return cmd


def _is_ours(hook: Any) -> bool:
    command = hook.get("command", "") if isinstance(hook, dict) else ""
    return isinstance(command, str) and ("stream-tts hook" in command or "stream_tts.cli hook" in command)


def _our_hooks(entries: list[Any]) -> Iterator[Any]:
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("hooks"), list):
            yield from (h for h in entry["hooks"] if _is_ours(h))


def install(settings: dict[str, Any], command: str, events: tuple[str, ...]) -> list[str]:
    """Add our hook to `settings` (in place) for each event that lacks it; the events added."""
    hooks = settings.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise HookError("settings 'hooks' is not an object; fix it by hand first")
    added = []
    for event in events:
        entries = hooks.setdefault(event, [])
        if not isinstance(entries, list):
            raise HookError(f"settings 'hooks.{event}' is not a list; fix it by hand first")
        if any(True for _ in _our_hooks(entries)):
            continue
        entries.append({"hooks": [{"type": "command", "command": command, "timeout": SETTINGS_TIMEOUT_S}]})
        added.append(event)
    return added


def cli_install(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="stream-tts hook install", description="Add `stream-tts hook` to a Claude Code settings.json."
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--project", action="store_true", help="./.claude/settings.json instead of ~/.claude/")
    where.add_argument("--settings", help="this settings file")
    parser.add_argument("--subagents", action="store_true", help="also speak sub-agents' final messages")
    add_config_option(parser, "TOML config the hook will use")
    args = parser.parse_args(argv)
    if args.settings:
        path = Path(args.settings).expanduser()
    elif args.project:
        path = Path.cwd() / ".claude" / "settings.json"
    else:
        path = Path.home() / ".claude" / "settings.json"
    try:
        settings = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        if not isinstance(settings, dict):
            raise HookError("it is not a JSON object")
        events = ("Stop", "Notification", *(("SubagentStop",) if args.subagents else ()))
        added = install(settings, hook_command(args.config or os.environ.get("STREAM_TTS_CONFIG")), events)
    except (ValueError, HookError, OSError) as exc:
        print(f"E hook install: {path}: {exc}; nothing changed", file=sys.stderr)
        return 1
    if not added:
        print(f"I hook install: {path} already has the stream-tts hook; nothing changed")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    print(f"I hook install: added the stream-tts hook for {', '.join(added)} to {path}")
    return 0
