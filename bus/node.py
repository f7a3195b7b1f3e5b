"""The runtime every node runs: sockets, the receive loop, stamps, tap events, shutdown.

A node subclasses `Node`, declares which endpoints it binds (`inputs`) and where each message
type it emits goes (`routes`), and overrides `handle`. It never touches a socket. The loop:
poll (control first), receive, decode, `handle`, stamp, send what it yields, tick; `wake()`, from
any thread, makes the loop tick at once (a worker's output need not wait for the poll). A bad frame is
counted and published as a `dropped` event; an EngineError becomes an `error` event and the node
goes on; anything else is published as a fatal error and re-raised so supervisord restarts us.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import zmq

from bus.config import Config
from bus.endpoints import EndpointError
from bus.errors import EngineError
from bus.events import Kind
from bus.freshness import Freshness
from bus.heartbeat import Heartbeat
from bus.messages import (
    BadMessage,
    Cancel,
    ControlMessage,
    GivenUp,
    Message,
    Resent,
    Stamp,
    TapEvent,
    decode,
    encode,
)
from bus.private import private_umask, secure_data_dir
from bus.security import SecurityError

HOST = socket.gethostname()  # where a node runs, in events that say so (synthesize's `started`)
POLL_MS = 50  # loop wakes at least this often to tick and to notice shutdown
SETUP_FAILURE_PAUSE_S = 5.0  # a node whose setup crashed says why this long before it exits,
SETUP_FAILURE_PAUSE_MAX_S = 60.0  # doubling with each crash in a row, up to this (a crash loop
# then costs one start a minute, not a torch import every few seconds)
SEND_RETRY_MS = 500  # a blocked send (peer gone, queue full) is retried until shutdown
TAP_HWM = 10_000  # tap events are dropped past this, never blocking the node
ZERO_COPY_BYTES = 65_536
BAD_LOG_WINDOW_S = 10.0  # bad messages: at most BAD_LOG_PER_WINDOW log lines per window
BAD_LOG_PER_WINDOW = 20
UNEXPECTED_MAX = 20  # unexpected exceptions (not EngineError) a node survives within the window...
UNEXPECTED_WINDOW_S = 60.0  # ... past that it exits and supervisord restarts it

log = logging.getLogger("stream_tts")


class Node:
    """Base of the four nodes. Override `setup`, `handle`, and optionally `on_control`, `tick`."""

    name: ClassVar[str] = "node"
    inputs: ClassVar[tuple[str, ...]] = ()  # endpoints this node binds and reads
    routes: ClassVar[dict[type[Message], str]] = {}  # emitted type -> endpoint it is sent to
    listens_control: ClassVar[bool] = True  # subscribe to ingest's control channel
    poll_ms: ClassVar[int] = POLL_MS  # how often tick() runs when nothing wakes the loop (see wake)

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = "starting"
        self.state_detail = ""
        self.counters: dict[str, int] = {"received": 0, "emitted": 0, "dropped": 0, "stale": 0, "errors": 0}
        self.freshness = Freshness()
        self.running = True
        self._tap: zmq.Socket | None = None
        self._current: Message | None = None
        self._recv_wall_ns = 0
        self._recv_mono_ns = 0
        self._bad_window_end = 0.0
        self._bad_logged = self._bad_unlogged = 0
        self._wake_addr = f"inproc://wake-{os.getpid()}-{id(self)}"
        self._wake_senders = threading.local()  # one PUSH per calling thread: sockets are not shared
        self._unexpected_at: list[float] = []

    # ---- what a node overrides -------------------------------------------------------------
    def setup(self) -> None:
        """Load the engine. Raise EngineError to stay up in state 'error', reporting why."""

    def handle(self, msg: Message) -> Iterable[Message]:
        """Everything this node makes of one input message, yielded as it is made."""
        return ()

    def on_control(self, msg: ControlMessage) -> Iterable[Message]:
        return ()

    def tick(self) -> Iterable[Message]:
        """Called at least every POLL_MS: timers (idle flush, jitter buffer, retries)."""
        return ()

    def accepting(self) -> bool:
        """False while the node holds all the work it can: its inputs are not read until it is
        True again, so what comes queues upstream (ZeroMQ's high-water marks push back on the
        sender) instead of being taken and failed here."""
        return True

    def close(self) -> None:
        """Release the engine."""

    # ---- helpers for node code -------------------------------------------------------------
    def event(self, kind: Kind, msg: Message | None = None, **detail: Any) -> None:
        """Publish one tap event (never blocks; dropped if the tap is gone)."""
        if msg is not None:
            ids = msg.ids()
        else:  # an event about a sentence we hold no message for: ids may come as keywords
            ids = {k: detail.pop(k) for k in ("stream", "seq", "attempt") if k in detail}
        ev = TapEvent(
            node=self.name,
            kind=kind,
            stream=str(ids.get("stream", "")),
            seq=int(ids.get("seq", -1)),
            attempt=int(ids.get("attempt", 0)),
            detail=detail,
            wall_ns=time.time_ns(),
            mono_ns=time.monotonic_ns(),
            stamps=getattr(msg, "stamps", ()) if kind == Kind.FINISHED else (),
        )
        if self._tap is not None:
            with contextlib.suppress(zmq.ZMQError):  # tap gone or full: drop, never block
                self._tap.send_multipart(encode(ev), flags=zmq.NOBLOCK)

    def wake(self) -> None:
        """Make the loop tick now instead of after poll_ms; safe from any thread, never blocks."""
        sock = getattr(self._wake_senders, "sock", None)
        if sock is None:
            sock = zmq.Context.instance().socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 1)  # one pending wake-up is enough
            sock.connect(self._wake_addr)
            self._wake_senders.sock = sock
        with contextlib.suppress(zmq.ZMQError):  # a wake-up already pending (or the loop gone)
            sock.send(b"", zmq.NOBLOCK)

    def finished(self, msg: Message, **detail: Any) -> None:
        """The per-sentence line every node writes to the tap when it is done with a sentence."""
        self.event(Kind.FINISHED, msg, **detail)

    def stamps_for(self, out: Message) -> tuple[Stamp, ...]:
        """What `out` gains on the wire: the input's stamps (when out carries none) + this stage's."""
        own = Stamp.now(self.name, self._recv_wall_ns or None, self._recv_mono_ns or None)
        if getattr(out, "stamps", ()):
            return (own,)
        return (*getattr(self._current, "stamps", ()), own)

    # ---- the runtime ----------------------------------------------------------------------
    def run(self) -> int:
        try:
            return self._run()
        except (EndpointError, SecurityError) as exc:
            log.error("E %s: %s", self.name, exc)
            return 2

    def _run(self) -> int:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        ep = self.config.endpoints
        self._tap = ep.connect_socket(ctx, "tap_in")
        self._tap.setsockopt(zmq.SNDHWM, TAP_HWM)
        wakeups = ctx.socket(zmq.PULL)
        wakeups.setsockopt(zmq.LINGER, 0)
        wakeups.bind(self._wake_addr)
        heartbeat = Heartbeat(self, ctx)
        heartbeat.start()
        ins = [ep.bind_socket(ctx, name) for name in self.inputs]
        control = ep.connect_socket(ctx, "control") if self.listens_control else None
        outs: dict[str, zmq.Socket] = {}
        for endpoint in dict.fromkeys(self.routes.values()):
            outs[endpoint] = (
                ep.bind_socket(ctx, endpoint) if endpoint == "control" else ep.connect_socket(ctx, endpoint)
            )
        for sock in outs.values():
            sock.setsockopt(zmq.SNDTIMEO, SEND_RETRY_MS)
        self._install_signals()
        self.state = "loading"
        try:
            self.setup()
            self.state, self.state_detail = "ready", ""
            self._crash_file().unlink(missing_ok=True)  # the crash loop, if any, is over
            self.event(Kind.READY, pid=os.getpid())  # a new pid: ingest re-sends what died
            log.info("I %s: ready", self.name)
        except EngineError as exc:
            self.state, self.state_detail = "error", str(exc)
            self.counters["errors"] += 1
            self.event(Kind.ERROR, error=str(exc), fatal=False, during="setup")
            log.error("E %s: %s", self.name, exc)
        except Exception as exc:  # a bug or a bad setting: say so where people look, then crash
            why = f"{type(exc).__name__}: {exc}"
            self.state, self.state_detail = "crashing", why
            self.event(Kind.ERROR, error=why, fatal=True, during="setup")
            log.exception("E %s: setup failed", self.name)
            # Heartbeats keep saying why for a while; the pause also paces supervisord's restarts,
            # growing with each crash in a row, so a node that can never start is no busy loop.
            pause = crash_pause_s(self._crash_file(), time.time())
            log.error("E %s: setup failed; exiting in %.0f s (supervisord restarts it)", self.name, pause)
            end = time.monotonic() + pause
            while self.running and time.monotonic() < end:  # SIGTERM (stream-tts down) ends it
                time.sleep(0.1)
            heartbeat.stop()
            raise
        poller = zmq.Poller()
        poller.register(wakeups, zmq.POLLIN)
        if control is not None:
            poller.register(control, zmq.POLLIN)
        for sock in ins:
            poller.register(sock, zmq.POLLIN)
        reading = True
        try:
            while self.running:
                if self.accepting() != reading:
                    reading = not reading
                    for sock in ins:
                        poller.modify(sock, zmq.POLLIN if reading else 0)
                ready = dict(poller.poll(self.poll_ms))
                if wakeups in ready:
                    while wakeups.poll(0):
                        wakeups.recv()
                if control is not None and control in ready:
                    self._drain(control, outs, control_only=True)
                for sock in ins:
                    if sock in ready and self.running and reading:
                        self._receive_one(sock, outs)
                self._tick(outs)
        finally:
            self.state = "stopping"
            heartbeat.stop()
            self.close()
            for sock in [*ins, *outs.values(), *([control] if control else []), wakeups]:
                sock.close()
            self._tap.close(linger=200)
            self._tap = None
        return 0

    def _drain(self, sock: zmq.Socket, outs: dict[str, zmq.Socket], control_only: bool) -> None:
        while self.running:
            try:
                frames = sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            self._process(frames, outs, control_only)

    def _receive_one(self, sock: zmq.Socket, outs: dict[str, zmq.Socket]) -> None:
        # Poll said readable, so a whole message is there: a plain recv, no NOBLOCK/Again dance.
        self._process(sock.recv_multipart(), outs, control_only=False)

    def _process(self, frames: list[bytes], outs: dict[str, zmq.Socket], control_only: bool) -> None:
        self._recv_wall_ns, self._recv_mono_ns = time.time_ns(), time.monotonic_ns()
        try:
            msg = decode(frames)
            if control_only and not isinstance(msg, ControlMessage):
                raise BadMessage(f"{msg.TYPE} is not a control message")
        except BadMessage as exc:
            self.counters["dropped"] += 1
            self.event(Kind.DROPPED, reason=str(exc), frames=len(frames), nbytes=sum(len(f) for f in frames))
            self._log_bad(exc)
            return
        self.counters["received"] += 1
        if isinstance(msg, Cancel):
            self.freshness.cancel(msg)
        elif isinstance(msg, Resent):
            self.freshness.supersede(msg.stream, msg.seq, msg.attempt)
        elif isinstance(msg, GivenUp):
            self.freshness.give_up(msg.stream, msg.seq)
        elif not isinstance(msg, ControlMessage) and (why := self.freshness.stale(msg)) is not None:
            self.counters["stale"] += 1
            self.event(Kind.STALE, msg, reason=why, type=msg.TYPE)
            return
        self._current = msg
        try:
            produced = self.on_control(msg) if isinstance(msg, ControlMessage) else self.handle(msg)
            self._send_all(produced, outs)
        except EngineError as exc:
            self.counters["errors"] += 1
            self.event(Kind.ERROR, msg, error=str(exc), fatal=False)
            log.error("E %s: %s: %s", self.name, msg, exc)
        except Exception as exc:
            self._unexpected(exc, msg)
        finally:
            self._current = None
            self._recv_wall_ns = self._recv_mono_ns = 0

    def _tick(self, outs: dict[str, zmq.Socket]) -> None:
        try:
            self._send_all(self.tick(), outs)
        except EngineError as exc:
            self.counters["errors"] += 1
            self.event(Kind.ERROR, error=str(exc), fatal=False, during="tick")
            log.error("E %s: %s", self.name, exc)
        except Exception as exc:
            self._unexpected(exc, None)

    def _unexpected(self, exc: Exception, msg: Message | None) -> None:
        """A bug, or the world failing under the node (a full disk), on one message or tick: said
        on the tap and in the log, and the node takes the next one, so one bad input costs that
        input only. Past UNEXPECTED_MAX of them within UNEXPECTED_WINDOW_S the node's state is
        not trusted any more: it exits and supervisord restarts it."""
        now = time.monotonic()
        self._unexpected_at = [t for t in self._unexpected_at if now - t < UNEXPECTED_WINDOW_S] + [now]
        fatal = len(self._unexpected_at) > UNEXPECTED_MAX
        self.counters["errors"] += 1
        self.event(Kind.ERROR, msg, error=f"{type(exc).__name__}: {exc}"[:500], fatal=fatal)
        log.exception("E %s: %s while handling %s", self.name, "fatal" if fatal else "error", msg or "a tick")
        if fatal:
            raise exc

    def _log_bad(self, exc: BadMessage) -> None:
        """Every bad message is counted and on the tap; the log gets a few, then a summary, so a
        flood of garbage cannot fill the disk."""
        now = time.monotonic()
        if now >= self._bad_window_end:
            if self._bad_unlogged:
                log.warning("W %s: %d more bad messages dropped (see the tap)", self.name, self._bad_unlogged)
            self._bad_window_end, self._bad_logged, self._bad_unlogged = now + BAD_LOG_WINDOW_S, 0, 0
        if self._bad_logged < BAD_LOG_PER_WINDOW:
            self._bad_logged += 1
            log.warning("W %s: dropped bad message: %s", self.name, exc)
        else:
            self._bad_unlogged += 1

    def _send_all(self, produced: Iterable[Message], outs: dict[str, zmq.Socket]) -> None:
        for out in produced:
            endpoint = self._route(out)
            frames = encode(out, self.stamps_for(out))
            sock = outs[endpoint]
            while True:
                try:
                    # Copying is cheaper than zero-copy bookkeeping below ~64 KB (pyzmq docs).
                    sock.send_multipart(frames, copy=len(frames[-1]) < ZERO_COPY_BYTES)
                    break
                except zmq.Again:
                    if not self.running:
                        log.warning("W %s: shutting down with %s unsent", self.name, out)
                        return
            self.counters["emitted"] += 1

    def _route(self, out: Message) -> str:
        for cls in type(out).__mro__:
            if cls in self.routes:
                return self.routes[cls]
        raise RuntimeError(f"{self.name} has no route for {out.TYPE}")

    def _crash_file(self) -> Path:
        return self.config.data_dir / "run" / f"{self.name}.setup-crashes"

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            log.info("I %s: %s, stopping", self.name, signal.Signals(signum).name)
            self.running = False

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)

    def iter_until_stopped(self, items: Iterable[Any]) -> Iterator[Any]:
        """Wrap a long engine stream so SIGTERM ends it between items."""
        for item in items:
            yield item
            if not self.running:
                return


def setup_logging(name: str) -> None:
    logging.basicConfig(
        level=os.environ.get("STREAM_TTS_LOG", "INFO").upper(),
        format="%(asctime)s %(message)s",
        stream=sys.stderr,
    )


def crash_pause_s(record: Path, now: float) -> float:
    """Seconds a node whose setup just crashed waits before it exits: SETUP_FAILURE_PAUSE_S, doubled
    for each crash in a row recorded in `record` (a crash over an hour after the last starts over)."""
    count = 0
    try:
        n, at = record.read_text(encoding="utf-8").split()
        if now - float(at) < 3600:
            count = int(n)
    except (OSError, ValueError):
        pass
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(f"{count + 1} {now}", encoding="utf-8")
    except OSError:
        pass  # an unwritable data dir: the first pause each time, still no busy loop
    return min(SETUP_FAILURE_PAUSE_S * 2**count, SETUP_FAILURE_PAUSE_MAX_S)


def main_for(node_cls: type[Node], argv: list[str] | None = None) -> int:
    """The `main()` of a node module: parse --config, build, run."""
    import argparse

    from bus.config import parse_with_config

    private_umask()  # journal, played.jsonl, WAVs, crash records: 0600 in 0700 folders
    setup_logging(node_cls.name)
    _, config = parse_with_config(argparse.ArgumentParser(prog=f"stream-tts node {node_cls.name}"), argv)
    try:
        secure_data_dir(config.data_dir)
    except OSError as exc:
        log.error("E %s: cannot make the data dir %s private: %s", node_cls.name, config.data_dir, exc)
        return 2
    return node_cls(config).run()
