"""Putting text on the bus: the `Publisher` client (what `say`, `pipe` and `hook` send with).

The slow-joiner problem: a PUB socket sends before the subscriber's subscription has arrived and
the first messages vanish. The publisher is an XPUB socket that connects to ingest's SUB and waits
until ingest's subscription comes back over that connection before it sends anything; if none
comes within WAIT_FOR_INGEST_S, ingest is not there and we say so, naming the endpoint.

Producers know (Lazy Pirate on top of PUB/SUB): every text carries an id the publisher chose;
ingest journals it and says `accepted` (or `refused`, with why: a full disk) on the tap with that
id. `send` waits for that word, sending the same text again every RESEND_S (ingest takes an id
once, so never twice), and raises when none comes within ACK_TIMEOUT_S (IngestUnavailable) or
ingest refused it (TextRefused), so a producer never reports success for text that was lost.

Delivery on close: pyzmq does not wait for unsent messages when the process exits (the context is
not terminated at exit), so a Publisher that made its own context terminates it in `close()`,
which waits (up to CLOSE_LINGER_MS) until what was sent has left: `stop` or a hook that exits
right after sending a control message loses nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from types import TracebackType

import zmq

from bus.config import Config
from bus.events import Kind
from bus.messages import BadMessage, ControlMessage, Message, Stamp, TapEvent, TextIn, decode, encode

WAIT_FOR_INGEST_S = 2.5  # `say` must fail within 3 s when ingest is down
CLOSE_LINGER_MS = 3000  # time given to queued text to leave on close
PIECE_CHARS = 8000  # at most 32 KB of UTF-8: well inside a header's 64 KiB
RESEND_S = 0.5  # no word from ingest this long: the same text (same id) again
ACK_TIMEOUT_S = 10.0  # no word at all this long: the producer is told it was not taken


def text_pieces(text: str, max_chars: int = PIECE_CHARS) -> Iterator[tuple[str, bool]]:
    """(piece, last) for a text of any length, each piece small enough for one message header;
    ingest's segmenter is indifferent to where the cuts fall. An empty text is one empty piece."""
    for start in range(0, max(len(text), 1), max_chars):
        yield text[start : start + max_chars], start + max_chars >= len(text)


def wait_for_subscriber(sock: zmq.Socket, wait_s: float) -> bool:
    """True once a subscription comes back on the connected XPUB `sock` within `wait_s` (then what
    it sends reaches a subscriber: no slow joiner); False when none came in time."""
    deadline = time.monotonic() + wait_s
    while True:
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0 or not sock.poll(left_ms, zmq.POLLIN):
            return False
        if sock.recv()[:1] == b"\x01":  # a subscription (b"\x00": an unsubscription)
            return True


class IngestUnavailable(ConnectionError):
    """No ingest answered at the text endpoint, or none acknowledged the text in time."""


class TextRefused(IngestUnavailable):
    """Ingest answered, and could not take the text (the reason says why, e.g. a full disk)."""


class Publisher:
    """Sends TextIn (and control) messages to ingest, losing none to the slow-joiner problem."""

    def __init__(
        self, config: Config, wait_s: float = WAIT_FOR_INGEST_S, context: zmq.Context | None = None
    ) -> None:
        self._endpoints = config.endpoints
        self.endpoint = config.endpoints.connect["text"]
        self.wait_s = wait_s
        self._given_ctx = context
        self._ctx: zmq.Context | None = context
        self._sock: zmq.Socket | None = None
        self._tap: zmq.Socket | None = None  # ingest's accepted / refused, by text id

    def __enter__(self) -> Publisher:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        if self._sock is not None:
            return
        if self._ctx is None:
            self._ctx = zmq.Context()  # our own: close() terminates it, so nothing sent is lost
        self._tap = self._endpoints.connect_socket(self._ctx, "tap_out")  # first: it joins meanwhile
        self._tap.setsockopt(zmq.LINGER, 0)
        sock = self._endpoints.connect_socket(self._ctx, "text")  # CURVE too, when it leaves loopback
        sock.setsockopt(zmq.LINGER, CLOSE_LINGER_MS)
        sock.setsockopt(zmq.XPUB_NODROP, 1)  # block (bounded by SNDTIMEO) rather than drop at HWM
        sock.setsockopt(zmq.SNDTIMEO, 2000)
        if not wait_for_subscriber(sock, self.wait_s):
            sock.close(linger=0)
            self.close()
            raise IngestUnavailable(
                f"no ingest is listening at {self.endpoint} (waited {self.wait_s:.1f} s). "
                "Start the pipeline with `stream-tts up` (or `make run`), or point "
                "STREAM_TTS_ENDPOINT_TEXT / --config at where ingest runs."
            )
        self._sock = sock

    def send_message(self, msg: Message) -> None:
        if self._sock is None:
            self.open()
        assert self._sock is not None
        if not msg.stamps:  # type: ignore[attr-defined]
            msg = msg.with_stamps((Stamp.now("publisher"),))
        try:
            self._sock.send_multipart(encode(msg))
        except zmq.Again:
            raise IngestUnavailable(f"ingest at {self.endpoint} is not taking messages") from None

    def send(self, stream: str, text: str, final: bool = True, source: str = "client") -> None:
        """Text of any length, in pieces small enough for one header (`final` on the last only),
        each sent until ingest has taken it: returns once all is journaled, or raises."""
        for piece, last in text_pieces(text):
            msg = TextIn(stream=stream, text=piece, final=final and last, source=source, id=uuid.uuid4().hex)
            self._send_until_taken(msg)

    def _send_until_taken(self, msg: TextIn) -> None:
        start = time.monotonic()
        while True:
            self.send_message(msg)
            resend_at = time.monotonic() + RESEND_S
            while (left := resend_at - time.monotonic()) > 0:
                word = self._word_of(msg.id, left)
                if word is None:
                    continue
                if word.kind == Kind.REFUSED:
                    raise TextRefused(
                        f"ingest refused the text: {word.detail.get('reason', 'no reason given')}"
                    )
                return
            if time.monotonic() - start >= ACK_TIMEOUT_S:
                raise IngestUnavailable(
                    f"ingest at {self.endpoint} did not acknowledge the text within {ACK_TIMEOUT_S:g} s "
                    "(is the pipeline up, the tap proxy included? `stream-tts status`)"
                )

    def _word_of(self, text_id: str, wait_s: float) -> TapEvent | None:
        """Ingest's accepted / refused for `text_id`, if it comes within wait_s."""
        assert self._tap is not None
        if not self._tap.poll(max(1, int(wait_s * 1000))):
            return None
        try:
            ev = decode(self._tap.recv_multipart())
        except BadMessage:
            return None
        if (
            isinstance(ev, TapEvent)
            and ev.node == "ingest"
            and ev.kind in (Kind.ACCEPTED, Kind.REFUSED)
            and ev.detail.get("id") == text_id
        ):
            return ev
        return None

    def control(self, msg: ControlMessage) -> None:
        self.send_message(msg)

    def close(self) -> None:
        """Close the socket; with our own context, wait until what was sent has left."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._tap is not None:
            self._tap.close(linger=0)
            self._tap = None
        if self._ctx is not None and self._given_ctx is None:
            self._ctx.term()
            self._ctx = None
