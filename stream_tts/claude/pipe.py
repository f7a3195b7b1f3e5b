"""`stream-tts pipe` (Claude Code stream-json -> ingest), `stream-tts flush`, and `stream-tts segment`
(what ingest would send).

`pipe` reports each bad line on the tap as node "pipe". Its tap socket is an XPUB, not the PUB the
nodes use, so that it can wait (TAP_WAIT_S at most, once) for the tap proxy's subscription before
the first event: a PUB sends into a connection nobody has subscribed on yet and the early events
vanish (the slow joiner). With no tap, or nobody watching it, the wait ends and events are dropped.

`segment` runs the very code ingest runs on what a producer publishes: the same extraction as
`pipe` (stream_tts/claude/stream_json.py) or `hook` (stream_tts/claude/hook.py), then one
`SentenceStream` per stream
(nodes/ingest/text/speakable.py: segmenter + speakable text) fed exactly as ingest feeds it (feed each text,
flush on final and on Flush), with the [ingest] options of the config. What it prints is what will
be spoken.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, TextIO

from bus.config import add_config_option
from stream_tts.claude.stream_json import BAD_KINDS, DEFAULT_STREAM, Say, StreamJsonReader, read_lines, says

RECONNECT_EVERY_S = 5.0  # after ingest went away, how often the pipe tries it again
TAP_WAIT_S = 0.5  # from opening, how long the first tap event may wait for the tap's subscription
TAP_LINGER_MS = 500  # time given to the last events (the summary) to leave on close


class _Tee:
    """Copies the input to stdout; a closed reader downstream stops the copy, not the pipe."""

    def __init__(self, out: BinaryIO) -> None:
        self.out: BinaryIO | None = out

    def write(self, data: bytes) -> int:
        if self.out is not None:
            try:
                self.out.write(data)
            except (BrokenPipeError, OSError):
                self.out = None
        return len(data)

    def flush(self) -> None:
        if self.out is not None:
            try:
                self.out.flush()
            except (BrokenPipeError, OSError):
                self.out = None


class _Tap:
    """Best-effort events on the tap as node "pipe", none lost to the slow joiner (module doc)."""

    def __init__(self, config: Any, ctx: Any) -> None:
        import zmq

        self._zmq = zmq
        self._sock = config.endpoints.connect_socket(ctx, "tap_in", kind=zmq.XPUB)  # XPUB: sees the proxy
        self._sock.setsockopt(zmq.LINGER, TAP_LINGER_MS)
        self._deadline = time.monotonic() + TAP_WAIT_S
        self._joined = False

    def send(self, kind: str, **detail: Any) -> None:
        from bus.client import wait_for_subscriber
        from bus.messages import TapEvent, encode

        zmq = self._zmq
        if not self._joined:  # once: the proxy subscribes once a tap watches; or give up
            wait_for_subscriber(self._sock, max(0.0, self._deadline - time.monotonic()))
            self._joined = True
        while self._sock.poll(0, zmq.POLLIN):  # later (un)subscriptions: keep the queue empty
            self._sock.recv()
        ev = TapEvent(
            node="pipe", kind=kind, detail=detail, wall_ns=time.time_ns(), mono_ns=time.monotonic_ns()
        )
        with contextlib.suppress(zmq.ZMQError):  # full or gone: drop, never block the pipe
            self._sock.send_multipart(encode(ev), flags=zmq.NOBLOCK)

    def close(self) -> None:
        self._sock.close()


class _Sender:
    """Publishes `Say`s through bus.client.Publisher; survives ingest going away (counts the loss)."""

    def __init__(self, config: Any, err: TextIO) -> None:
        import zmq

        from bus.security import SecurityError

        self.config = config
        self.err = err
        self.pub: Any = None
        self.sent = 0
        self.lost = 0
        self._next_try = 0.0
        self._ctx = zmq.Context()
        try:  # opened first, so the tap's subscription arrives while ingest is being waited for
            self._tap: _Tap | None = _Tap(config, self._ctx)
        except (SecurityError, zmq.ZMQError) as exc:  # say so; the pipe goes on without the tap
            print(f"W pipe: no tap events: {exc}", file=err)
            self._tap = None
        self.cancel_on_new_turn = bool(config.section("ingest").get("cancel_on_new_turn", True))

    def connect(self) -> bool:
        from bus.client import IngestUnavailable, Publisher

        if self.pub is not None:
            return True
        if time.monotonic() < self._next_try:
            return False
        pub = Publisher(self.config, context=self._ctx)
        try:
            pub.open()
        except IngestUnavailable as exc:
            self._next_try = time.monotonic() + RECONNECT_EVERY_S
            print(f"E pipe: {exc}", file=self.err)
            return False
        self.pub = pub
        return True

    def send(self, say: Say) -> None:
        from bus.client import IngestUnavailable
        from bus.messages import Cancel, ControlMessage, Flush

        if say.cancel or say.flush:
            if say.cancel and not self.cancel_on_new_turn:
                return
            msg: ControlMessage = (
                Cancel(stream=say.stream, reason="new agent turn") if say.cancel else Flush(stream=say.stream)
            )
            if self.connect():
                try:
                    self.pub.control(msg)
                except IngestUnavailable as exc:
                    print(f"E pipe: {exc}", file=self.err)
            return
        if not self.connect():
            self.lost += 1
            return
        try:
            self.pub.send(say.stream, say.text, final=say.final, source="pipe")  # in pieces, when long
            self.sent += 1
        except IngestUnavailable as exc:
            print(f"E pipe: {exc}", file=self.err)
            self.lost += 1
            self.pub.close()
            self.pub = None
            self._next_try = time.monotonic() + RECONNECT_EVERY_S

    def tap(self, kind: str, **detail: Any) -> None:
        """A best-effort event on the tap (`stream-tts tap` shows it), as node "pipe"."""
        if self._tap is not None:
            self._tap.send(kind, **detail)

    def close(self) -> None:
        if self.pub is not None:
            self.pub.close()
        if self._tap is not None:
            self._tap.close()
        self._ctx.term()  # waits (each socket's linger) until what was sent has left: pyzmq does not at exit


def cli_pipe(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="stream-tts pipe",
        description="Speak Claude Code's prose: claude -p --output-format stream-json --verbose "
        "[--include-partial-messages] TASK | stream-tts pipe",
    )
    add_config_option(parser)
    parser.add_argument("--tee", action="store_true", help="copy the input to stdout, unchanged")
    parser.add_argument("--subagents", action="store_true", help="speak sub-agents' text too")
    parser.add_argument("--stream", default=DEFAULT_STREAM, help="stream name for lines with no session_id")
    parser.add_argument("--stats", action="store_true", help="print the counts as JSON on stderr at the end")
    args = parser.parse_args(argv)
    from bus.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"E pipe: {exc}", file=sys.stderr)
        return 2
    reader = StreamJsonReader(subagents=args.subagents, default_stream=args.stream)
    sender = _Sender(config, sys.stderr)
    sender.connect()
    tee = _Tee(sys.stdout.buffer) if args.tee else None
    reported = 0
    try:
        for say in says(read_lines(sys.stdin.buffer, tee), reader):
            sender.send(say)
            reported = _report_bad(reader, sender, reported)
        reported = _report_bad(reader, sender, reported)
    except KeyboardInterrupt:
        pass
    finally:
        stats = {**reader.stats, "published": sender.sent, "lost": sender.lost}
        sender.tap("pipe_stats", **stats)
        sender.close()
    bad = reader.bad
    print(
        f"I pipe: {reader.stats['lines']} lines, {reader.stats['text_blocks'] + reader.stats['text_deltas']} "
        f"texts, {sender.sent} published, {sender.lost} lost, {bad} bad line{'s' * (bad != 1)} skipped"
        + (f" ({', '.join(f'{k} {reader.stats[k]}' for k in BAD_KINDS if reader.stats[k])})" if bad else ""),
        file=sys.stderr,
    )
    if args.stats:
        print(json.dumps(stats, sort_keys=True), file=sys.stderr)
    return 1 if sender.lost else 0


def _report_bad(reader: StreamJsonReader, sender: _Sender, reported: int) -> int:
    """Each new bad-line reason once on stderr and the tap (the first 20; the summary counts all)."""
    for reason in reader.errors[reported:]:
        print(f"W pipe: skipped {reason}", file=sys.stderr)
        sender.tap("dropped", reason=reason)
    return len(reader.errors)


# ---- flush --------------------------------------------------------------------------------------
def cli_flush(argv: list[str]) -> int:
    """`stream-tts flush [--stream S]`: what is held back goes now, at ingest and at playback."""
    parser = argparse.ArgumentParser(
        prog="stream-tts flush",
        description="Speak now what is held back: ingest sends an unfinished sentence, playback "
        "starts what it buffers. Pipe and hook send this by themselves at the end of each turn.",
    )
    parser.add_argument("--stream", default="", help="only this stream (default: every stream)")
    add_config_option(parser)
    args = parser.parse_args(argv)
    from bus.client import IngestUnavailable, Publisher
    from bus.config import ConfigError, load_config
    from bus.messages import Flush

    try:  # the Publisher's close waits until the Flush has left (bus/client.py)
        with Publisher(load_config(args.config)) as pub:
            pub.control(Flush(stream=args.stream))
    except (IngestUnavailable, ConfigError) as exc:
        print(f"E flush: {exc}", file=sys.stderr)
        return 1
    return 0


# ---- segment ------------------------------------------------------------------------------------
def ingest_sentences(
    items: Iterable[Say], section: dict[str, Any] | None = None
) -> Iterator[tuple[str, str]]:
    """(stream, sentence) as ingest makes them from what a producer publishes: per stream, feed
    each text, flush when it is final or on a Flush; what is still open at the end is flushed
    (ingest's idle flush)."""
    from bus.client import text_pieces
    from nodes.ingest.text.speakable import SentenceStream

    streams: dict[str, SentenceStream] = {}
    for say in items:
        if say.cancel:  # ingest drops what is pending of a cancelled stream
            streams.pop(say.stream, None)
            continue
        if say.flush:
            if say.stream in streams:
                yield from ((say.stream, s) for s in streams[say.stream].flush())
            continue
        for piece, final in text_pieces(say.text):
            seg = streams.get(say.stream)
            if seg is None:
                seg = streams[say.stream] = SentenceStream.from_section(section or {})
            out = seg.feed(piece)
            if final and say.final:
                out += seg.flush()
            yield from ((say.stream, s) for s in out)
    for stream, seg in streams.items():
        yield from ((stream, s) for s in seg.flush())


def cli_segment(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="stream-tts segment", description="Print, one per line, the sentences ingest would send."
    )
    parser.add_argument("file", nargs="?", default="-", help="input file (default: stdin)")
    parser.add_argument(
        "--format",
        choices=("text", "stream-json", "hook"),
        default="text",
        help="plain text/markdown (as `say` sends it), Claude Code stream-json, or a hook payload",
    )
    parser.add_argument("--subagents", action="store_true", help="stream-json: speak sub-agents' text too")
    parser.add_argument(
        "--streams", action="store_true", help="prefix each sentence with its stream and a tab"
    )
    add_config_option(parser, "TOML config whose [ingest] options apply")
    args = parser.parse_args(argv)
    from bus.config import ConfigError, load_config

    try:
        section = dict(load_config(args.config).section("ingest"))
        src: BinaryIO = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except (ConfigError, OSError) as exc:
        print(f"E segment: {exc}", file=sys.stderr)
        return 2
    reader = StreamJsonReader(subagents=args.subagents)
    with src:
        try:
            items = list(_items(args.format, src, reader))
            for stream, sentence in ingest_sentences(items, section):
                print(f"{stream}\t{sentence}" if args.streams else sentence, flush=True)
        except RecursionError:  # a hook payload nested thousands deep (json.loads recurses)
            print("E segment: the hook payload is nested too deep to read", file=sys.stderr)
            return 1
        except (ValueError, OSError) as exc:
            print(f"E segment: {exc}", file=sys.stderr)
            return 1
    for reason in reader.errors:
        print(f"W segment: skipped {reason}", file=sys.stderr)
    return 0


def _items(fmt: str, src: BinaryIO, reader: StreamJsonReader) -> Iterator[Say]:
    if fmt == "stream-json":
        yield from says(read_lines(src), reader)
        return
    raw = src.read()
    if fmt == "text":
        yield Say("cli", raw.decode("utf-8", errors="replace"), True)
        return
    from stream_tts.claude.hook import hook_stream, hook_text

    payload = json.loads(raw)
    if not isinstance(payload, dict):
        raise ValueError("a hook payload is a JSON object")
    text, _ = hook_text(payload, wait_s=0)
    yield Say(hook_stream(payload), text, True)
    yield Say(hook_stream(payload), "", False, flush=True)
