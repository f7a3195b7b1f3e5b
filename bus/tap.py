"""The tap: every node PUBlishes events to one XSUB/XPUB proxy; anyone SUBscribes to watch.

The proxy only forwards (pyzmq's own `zmq.proxy`), so it cannot slow a node down: a node's PUB
drops events rather than block when the tap is gone. `stream-tts tap` prints events as JSON lines.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import zmq

from bus.config import Config
from bus.messages import BadMessage, TapEvent, decode

CONTROL_ADDR = "inproc://tap-proxy-control"
STOP_JOIN_S = 2.0  # the proxy thread ends at TERMINATE; a daemon thread never holds the exit


def run_proxy(config: Config) -> int:
    """Bind tap_in (XSUB) and tap_out (XPUB) and forward until SIGTERM/SIGINT.

    The forwarding is pyzmq's steerable proxy in a thread; the main thread only waits for the
    signal and then sends the proxy TERMINATE on its control socket. (A signal does not reliably
    break a blocking `zmq.proxy` in the main thread: the tap sometimes outlived SIGTERM until it
    was killed, which held up `stream-tts down`.)"""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    ep = config.endpoints
    xsub = ep.bind_socket(ctx, "tap_in")
    xpub = ep.bind_socket(ctx, "tap_out")
    xpub.setsockopt(zmq.SNDHWM, 100_000)
    control, steer = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    control.bind(CONTROL_ADDR)
    steer.connect(CONTROL_ADDR)
    stopping = threading.Event()

    def stop(_signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    forward = threading.Thread(target=_forward, args=(xsub, xpub, control), name="tap-proxy", daemon=True)
    forward.start()
    print(f"I tap: proxy {ep.bind['tap_in']} -> {ep.bind['tap_out']}", file=sys.stderr, flush=True)
    while not stopping.wait(0.2) and forward.is_alive():
        pass
    steer.send(b"TERMINATE")
    forward.join(STOP_JOIN_S)
    for sock in (steer, control, xsub, xpub):
        sock.close(linger=0)
    return 0


def _forward(xsub: zmq.Socket, xpub: zmq.Socket, control: zmq.Socket) -> None:
    with contextlib.suppress(zmq.ContextTerminated):
        zmq.proxy_steerable(xsub, xpub, None, control)


def subscribe(config: Config, ctx: zmq.Context | None = None) -> zmq.Socket:
    sock = config.endpoints.connect_socket(ctx or zmq.Context.instance(), "tap_out")
    return sock


def pending(sock: zmq.Socket) -> Iterator[TapEvent]:
    """The TapEvents already waiting on a tap subscription, without blocking."""
    while True:
        try:
            frames = sock.recv_multipart(flags=zmq.NOBLOCK)
        except zmq.Again:
            return
        try:
            msg = decode(frames)
        except BadMessage:
            continue
        if isinstance(msg, TapEvent):
            yield msg


def events(sock: zmq.Socket, timeout_s: float | None = None) -> Iterator[TapEvent]:
    """TapEvents from a tap subscription until timeout_s passes (None: for ever)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        wait_ms = 200 if deadline is None else int((deadline - time.monotonic()) * 1000)
        if deadline is not None and wait_ms <= 0:
            return
        if not sock.poll(max(wait_ms, 0) if deadline is not None else 200):
            continue
        try:
            msg = decode(sock.recv_multipart())
        except BadMessage:
            continue
        if isinstance(msg, TapEvent):
            yield msg
