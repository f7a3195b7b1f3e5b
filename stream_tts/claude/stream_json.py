"""Claude Code's stream-json -> the prose to speak, and `stream-tts pipe`, which publishes it.

    claude -p --output-format stream-json --verbose [--include-partial-messages] "task" | stream-tts pipe

What is spoken (docs/claude-code.md):
- `text` blocks of main-thread `assistant` lines (`parent_tool_use_id` null). Not thinking,
  tool_use, tool results (`user` lines), `system`, `result` (it repeats the last text block), nor
  unknown line types (newer CLIs add some: skipped like the official SDK does).
- A message comes as one `assistant` line per content block sharing `message.id`, so lines are
  de-duplicated on their `uuid` (or message id + block content when a line has none), never on
  `message.id`: a repeated line is spoken once, the same words in another message again.
- With --include-partial-messages, `text_delta`s are published as they come (final=False) and the
  block's `content_block_stop` closes it (final=True), so ingest's segmenter lets each sentence go
  as soon as it closes. The complete `assistant` line that follows for that block is not spoken
  again: the n-th text block of message M in `assistant` lines pairs with the n-th text block that
  `content_block_start` opened for M.
- Sub-agent text (`parent_tool_use_id` set) is skipped unless `subagents=True`; then its complete
  lines are spoken (never its deltas) on the stream "<session_id>/<parent_tool_use_id>", so it
  cannot interleave with the main thread's open sentence.
- A turn's end (its `result` line, or the end of input) closes what is open and then flushes each
  stream that spoke (`Say.flush`: ingest lets an unfinished sentence go, playback stops waiting).

Bad input (invalid UTF-8, not JSON, not an object of a known shape, a line over MAX_LINE_BYTES, a
line nested deeper than MAX_JSON_DEPTH, a truncated last line) is counted under `stats`, reported,
and skipped; reading goes on. (json.loads recurses once per level: 5000 nested brackets raised
RecursionError, which killed the reader, so a line's depth is measured before it is parsed.) The pipe is
read as bytes and split on b"\\n" before decoding, so a multibyte character cut by a read()
boundary is never corrupted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

MAX_LINE_BYTES = 8 * 1024 * 1024  # a longer line is skipped unread (counted as oversize)
READ_BYTES = 64 * 1024
DEFAULT_STREAM = "claude"
MAX_TRACKED = 4096  # message ids and line keys remembered for pairing and de-duplication
MAX_JSON_DEPTH = 64  # a line nested deeper is skipped unparsed (stream-json nests under 10 deep)

# stats keys for bad input; every other key counts what was read or skipped on purpose
BAD_KINDS = ("bad_utf8", "not_json", "bad_shape", "oversize", "too_deep", "truncated")


@dataclass(frozen=True, slots=True)
class Say:
    """Text for ingest: `final` closes the text block (ingest flushes its unfinished sentence)."""

    stream: str
    text: str
    final: bool
    cancel: bool = False  # a new agent turn began: stale speech of this stream is cancelled first
    flush: bool = False  # the turn ended: what is held of this stream goes now (a Flush, no text)


class _Lru(OrderedDict[Any, int]):
    """A bounded map: the oldest keys go first."""

    def bump(self, key: Any, by: int = 1) -> int:
        value = self.get(key, 0) + by
        self[key] = value
        self.move_to_end(key)
        while len(self) > MAX_TRACKED:
            self.popitem(last=False)
        return value


class StreamJsonReader:
    """Turns stream-json lines into `Say` items; keeps the pairing and de-duplication state."""

    def __init__(self, subagents: bool = False, default_stream: str = DEFAULT_STREAM) -> None:
        self.subagents = subagents
        self.default_stream = default_stream
        self.stats: Counter[str] = Counter()
        self.errors: list[str] = []  # the first few bad-input reasons, for the summary
        self._seen = _Lru()  # line keys already handled
        self._streamed = _Lru()  # message id -> text blocks opened by content_block_start
        self._spoken_lines = _Lru()  # message id -> text blocks met in assistant lines
        self._message: dict[str, str] = {}  # session -> id of the message being streamed
        self._open: dict[tuple[str, int], str] = {}  # (session, block index) -> stream of an open text block
        self._turn_ended: set[str] = set()  # sessions whose turn ended with a `result` line
        self._spoke: dict[str, None] = {}  # streams given text since their last flush (ordered set)
        self._carry: dict[tuple[str, int], str] = {}  # a high surrogate that ended a delta (JSON "\\ud83d")

    # ---- input -----------------------------------------------------------------------------
    def line(self, raw: bytes, truncated: bool = False) -> list[Say]:
        """One line of the pipe (without its newline). `truncated`: it ended at EOF with no newline."""
        self.stats["lines"] += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self._bad("bad_utf8", f"invalid UTF-8 at byte {exc.start}")
        if not text.strip():
            self.stats["blank"] += 1
            return []
        if json_too_deep(text, MAX_JSON_DEPTH):
            return self._bad("too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            return self._bad("truncated" if truncated else "not_json", f"{exc.msg} at char {exc.pos}")
        except ValueError as exc:  # e.g. a number too long to convert
            return self._bad("not_json", str(exc))
        except RecursionError:  # pragma: no cover - json_too_deep measured it first
            return self._bad("too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            return self._bad("bad_shape", "not a JSON object with a string 'type'")
        try:
            out = self._object(obj)
        except _Shape as exc:
            return self._bad("bad_shape", f"{obj['type']} line: {exc}")
        self._spoke.update((say.stream, None) for say in out if say.text)
        return out

    def oversize(self, nbytes: int) -> list[Say]:
        self.stats["lines"] += 1
        return self._bad("oversize", f"line of {nbytes} bytes exceeds {MAX_LINE_BYTES}")

    def finish(self) -> list[Say]:
        """End of input: close every text block still open (a stream cut before content_block_stop),
        then flush every stream that spoke since its last flush."""
        out = self._close_blocks()
        out += [Say(stream, "", False, flush=True) for stream in self._spoke]
        self._spoke.clear()
        return out

    def _close_blocks(self) -> list[Say]:
        out = [Say(stream, "", True) for stream in dict.fromkeys(self._open.values())]
        self._open.clear()
        self._carry.clear()
        return out

    def _end_turn(self, session: str) -> list[Say]:
        """A `result` line: close what is open, flush the session's streams (its sub-agents' too)."""
        out = self._close_blocks()
        ended = [s for s in self._spoke if s == session or s.startswith(session + "/")]
        for stream in ended:
            del self._spoke[stream]
        return out + [Say(stream, "", False, flush=True) for stream in ended]

    @property
    def bad(self) -> int:
        return sum(self.stats[k] for k in BAD_KINDS)

    # ---- line types ------------------------------------------------------------------------
    def _object(self, obj: dict[str, Any]) -> list[Say]:
        kind = obj["type"]
        if kind == "assistant":
            return self._assistant(obj)
        if kind == "stream_event":
            return self._stream_event(obj)
        if kind in ("user", "system", "result"):
            self.stats[f"skipped_{kind}"] += 1
            if kind == "result":  # a turn ended: nothing of it stays open or held
                session = self._session(obj)
                self._turn_ended.add(session)
                return self._end_turn(session)
            if kind == "system" and obj.get("subtype") == "init":
                session = self._session(obj)
                if session in self._turn_ended:  # the next turn starts: what is left of the last is stale
                    self._turn_ended.discard(session)
                    self.stats["new_turns"] += 1
                    return [Say(session, "", False, cancel=True)]
            return []
        self.stats["skipped_unknown_type"] += 1
        return []

    def _session(self, obj: dict[str, Any]) -> str:
        session = obj.get("session_id")
        return session if isinstance(session, str) and session else self.default_stream

    def _assistant(self, obj: dict[str, Any]) -> list[Say]:
        message = obj.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            raise _Shape("'message.content' is not a list")
        content: list[Any] = message["content"]
        msg_id = message.get("id") if isinstance(message.get("id"), str) else None
        uuid = obj.get("uuid")
        key = uuid if isinstance(uuid, str) and uuid else ("content", msg_id, _digest(content))
        if key in self._seen:
            self.stats["duplicate_lines"] += 1
            return []
        self._seen.bump(key)
        parent = obj.get("parent_tool_use_id")
        if parent is not None and not self.subagents:
            self.stats["skipped_subagent"] += 1
            return []
        stream = self._session(obj) if parent is None else f"{self._session(obj)}/{parent}"
        out: list[Say] = []
        for block in content:
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise _Shape("a content block is not an object with a string 'type'")
            if block["type"] != "text":
                self.stats[f"skipped_{block['type']}"] += 1
                continue
            text = block.get("text")
            if not isinstance(text, str):
                raise _Shape("a text block has no string 'text'")
            if parent is None and msg_id is not None:
                ordinal = self._spoken_lines.bump(msg_id) - 1
                if ordinal < self._streamed.get(msg_id, 0):
                    self.stats["text_blocks_already_streamed"] += 1
                    continue
            self.stats["text_blocks"] += 1
            if text.strip():
                out.append(Say(stream, _clean(text), True))
        return out

    def _stream_event(self, obj: dict[str, Any]) -> list[Say]:
        event = obj.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise _Shape("'event' is not an object with a string 'type'")
        uuid = obj.get("uuid")
        if isinstance(uuid, str) and uuid:
            if uuid in self._seen:
                self.stats["duplicate_lines"] += 1
                return []
            self._seen.bump(uuid)
        if obj.get("parent_tool_use_id") is not None:
            self.stats["skipped_subagent_events"] += 1  # sub-agent text comes from its complete lines
            return []
        session = self._session(obj)
        etype = event["type"]
        if etype == "message_start":
            message = event.get("message")
            if not isinstance(message, dict) or not isinstance(message.get("id"), str):
                raise _Shape("message_start without 'message.id'")
            self._message[session] = message["id"]
            return []
        if etype not in ("content_block_start", "content_block_delta", "content_block_stop"):
            return []
        index = event.get("index")
        if type(index) is not int:
            raise _Shape(f"{etype} without an integer 'index'")
        where = (session, index)
        if etype == "content_block_start":
            block = event.get("content_block")
            if not isinstance(block, dict):
                raise _Shape("content_block_start without 'content_block'")
            if block.get("type") != "text":
                return []
            self._open_block(where, session)
            text = block.get("text")
            return [Say(session, text, False)] if isinstance(text, str) and text else []
        if etype == "content_block_delta":
            delta = event.get("delta")
            if not isinstance(delta, dict):
                raise _Shape("content_block_delta without 'delta'")
            if delta.get("type") != "text_delta":
                return []
            text = delta.get("text")
            if not isinstance(text, str):
                raise _Shape("text_delta without string 'text'")
            if where not in self._open:  # joined mid-block: a text_delta only comes in a text block
                self._open_block(where, session)
            self.stats["text_deltas"] += 1
            text = self._carry.pop(where, "") + text
            if text and "\ud800" <= text[-1] <= "\udbff":  # half a surrogate pair: wait for the other
                self._carry[where] = text[-1]
                text = text[:-1]
            return [Say(session, _clean(text), False)] if text else []
        stream = self._open.pop(where, None)
        rest = _clean(self._carry.pop(where, ""))
        return [Say(stream, rest, True)] if stream is not None else []

    def _open_block(self, where: tuple[str, int], session: str) -> None:
        self._open[where] = session
        msg_id = self._message.get(session)
        if msg_id is not None:
            self._streamed.bump(msg_id)

    def _bad(self, kind: str, reason: str) -> list[Say]:
        self.stats[kind] += 1
        if len(self.errors) < 20:
            self.errors.append(f"line {self.stats['lines']}: {kind}: {reason}")
        return []


# A JSON string (skipped whole, so brackets inside text do not count) or one bracket.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def json_too_deep(text: str, limit: int) -> bool:
    """Whether the JSON in `text` nests arrays and objects more than `limit` deep, measured without
    parsing it (json.loads recurses once per level). Text with at most `limit` opening brackets
    cannot be: two counts, and no scan, for nearly every line."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for m in _STRING_OR_BRACKET.finditer(text):
        c = text[m.start()]
        if c == "[" or c == "{":
            depth += 1
            if depth > limit:
                return True
        elif c != '"':
            depth -= 1
    return False


class _Shape(ValueError):
    """A JSON line whose fields do not have the documented shape."""


def _clean(text: str) -> str:
    """Surrogate pairs (from JSON escapes) joined, lone halves replaced: text that encodes as UTF-8."""
    if not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _digest(content: list[Any]) -> str:
    return hashlib.sha1(json.dumps(content, sort_keys=True).encode(), usedforsecurity=False).hexdigest()


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Line:
    """One line read from the pipe: its bytes (no newline), or how long it was when oversize."""

    data: bytes
    truncated: bool = False  # the input ended without a newline after it
    oversize: int = 0  # > 0: the line was longer than the limit and was dropped (its byte count)


def read_lines(
    src: BinaryIO,
    tee: Sink | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    read_bytes: int = READ_BYTES,
) -> Iterator[Line]:
    """Whole lines of a byte stream as soon as their newline arrives; never decodes a partial line.

    A line over `max_line_bytes` is not kept in memory: it is skipped to its newline and reported.
    `tee` gets every byte read, unchanged, as soon as it is read."""
    read = getattr(src, "read1", src.read)
    buf = bytearray()
    skipping = 0  # bytes of an oversize line dropped so far
    while True:
        chunk = read(read_bytes)
        if not chunk:
            break
        if tee is not None:
            tee.write(chunk)
            tee.flush()
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                piece = chunk[start:]
                if skipping:
                    skipping += len(piece)
                elif len(buf) + len(piece) > max_line_bytes:
                    skipping = len(buf) + len(piece)
                    buf.clear()
                else:
                    buf += piece
                break
            piece = chunk[start:nl]
            start = nl + 1
            if skipping or len(buf) + len(piece) > max_line_bytes:
                yield Line(b"", oversize=skipping + len(buf) + len(piece))
                skipping = 0
                buf.clear()
                continue
            buf += piece
            yield Line(bytes(buf))
            buf.clear()
    if skipping:
        yield Line(b"", truncated=True, oversize=skipping)
    elif buf:
        yield Line(bytes(buf), truncated=True)


def says(lines: Iterator[Line], reader: StreamJsonReader) -> Iterator[Say]:
    """Everything to say from a sequence of lines, then what EOF closes."""
    for line in lines:
        if line.oversize:
            yield from reader.oversize(line.oversize)
        else:
            yield from reader.line(line.data, truncated=line.truncated)
    yield from reader.finish()
