"""Every message on the stream-tts bus, and the only way in or out of the wire (`encode`/`decode`).

Wire form, one ZeroMQ multipart message:
  frame 0  msgpack map: {"v": VERSION, "type": TYPE, <fields>}   (at most MAX_HEADER_BYTES)
  frame 1  raw payload bytes, only for types that carry one (PCM audio; at most MAX_PAYLOAD_BYTES)
Audio never travels as a msgpack list of numbers: its format, rate and channels are header fields.

`decode` turns every malformed input (bad msgpack, unknown version or type, missing or wrong-typed
field, a field out of its range, oversize frame, non-UTF-8 text, a payload that does not fit its
format) into one `BadMessage`. Every field is range-checked (bus/wire.py): the bounds are each
class's LIMITS, below; a field no class names gets bus/wire.py's DEFAULT_LIMITS for its type.
`encode` repairs text that is not valid Unicode (a lone surrogate becomes U+FFFD).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack

from bus.events import kind_of
from bus.wire import (  # noqa: F401 (re-exported)
    MAX_INT,
    MAX_STR_CHARS,
    PAYLOAD,
    PLAIN,
    STAMPS,
    BadMessage,
    Limit,
    Stamp,
    Stamps,
    check,
    decoder,
    encoder,
    schema,
)

VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

# Header keys written once: the envelope's own, then each field under its dataclass name.
KEY_VERSION = "v"
KEY_TYPE = "type"

# Bytes per sample of each PCM format an AudioChunk may carry.
SAMPLE_BYTES = {"f32le": 4, "s16le": 2}

# Bounds every decoded field is checked against (docs/architecture.md, "Messages and the wire").
MAX_ID = 2**53 - 1  # seq, attempt, index, samples: exact in a float64 (JSON) and in SQLite
MAX_STREAM_CHARS = 256  # a stream name (a session id; "<session>/<tool use id>" for a sub-agent)
MAX_NAME_CHARS = 64  # a stage, node, source, event kind, sample format or text id
MAX_TEXT_CHARS = MAX_STR_CHARS  # a producer's text piece (bus/client.py sends 8000), a sentence's Japanese
MAX_SENTENCE_CHARS = 2000  # one English sentence (ingest cuts at max_sentence_chars, default 600)
MAX_CLAUSE_CHARS = 500  # one Japanese clause: what synthesize's engine takes at once
MAX_REASON_CHARS = 2000  # why a sentence failed or a stream was cancelled
MAX_PATH_CHARS = 4096  # a WAV path (PATH_MAX)
MIN_RATE_HZ, MAX_RATE_HZ = 8000, 192_000
MAX_CHANNELS = 8


@dataclass(frozen=True, slots=True)
class Message:
    """Base of all message types: a TYPE string, the schema VERSION, and the stage stamps."""

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = VERSION
    PAYLOAD_FIELD: ClassVar[str | None] = None
    # Each field's bounds at decode, by name, for every type (a class narrows them in its own);
    # a field named nowhere gets bus/wire.py's DEFAULT_LIMITS for its type (ints: 0..2**63-1).
    LIMITS: ClassVar[dict[str, Limit]] = {
        "stream": (0, MAX_STREAM_CHARS),
        "seq": (0, MAX_ID),
        "attempt": (0, MAX_ID),
        "index": (0, MAX_ID),
        "samples": (0, MAX_ID),
        "rate_hz": (MIN_RATE_HZ, MAX_RATE_HZ),
        "channels": (1, MAX_CHANNELS),
        "first_sample_wall_ns": (0, MAX_INT),
        "last_sample_wall_ns": (0, MAX_INT),
        "wall_ns": (0, MAX_INT),
        "mono_ns": (0, MAX_INT),
        "text": (0, MAX_TEXT_CHARS),
        "text_en": (0, MAX_SENTENCE_CHARS),
        "text_ja": (0, MAX_TEXT_CHARS),
        "stage": (0, MAX_NAME_CHARS),
        "node": (0, MAX_NAME_CHARS),
        "kind": (0, MAX_NAME_CHARS),
        "source": (0, MAX_NAME_CHARS),
        "sample_format": (0, MAX_NAME_CHARS),
        "reason": (0, MAX_REASON_CHARS),
        "wav_path": (0, MAX_PATH_CHARS),
        "id": (0, MAX_NAME_CHARS),  # a producer's id for its text (bus/client.py: a uuid4 hex)
    }

    def to_frames(self, extra_stamps: Stamps = ()) -> list[bytes]:
        """Header frame (+ payload frame); `extra_stamps` are appended on the wire only."""
        return encoder(type(self), _packer, KEY_VERSION, KEY_TYPE)(self, extra_stamps)

    @classmethod
    def from_header(cls, header: dict[str, Any], payload: bytes | None) -> Message:
        """The message a header map and payload frame (or None) hold, or BadMessage."""
        return decoder(cls)(header, payload)

    def validate(self) -> None:
        """Cross-field checks beyond types; raise BadMessage."""

    def with_stamps(self, stamps: Stamps) -> Message:
        return dataclasses.replace(self, stamps=stamps)  # type: ignore[call-arg]

    def ids(self) -> dict[str, Any]:
        """The identifying fields, for logs and tap events."""
        out: dict[str, Any] = {}
        for name in ("stream", "seq", "attempt", "index"):
            if hasattr(self, name):
                out[name] = getattr(self, name)
        return out

    def __str__(self) -> str:
        ids = " ".join(f"{k}={v}" for k, v in self.ids().items())
        return f"<{self.TYPE} {ids}>"


class ControlMessage(Message):
    """Marker base: the runtime handles these before any data waiting behind them."""


_REGISTRY: dict[str, type[Message]] = {}


def register(cls: type[Message]) -> type[Message]:
    if not cls.TYPE or cls.TYPE in _REGISTRY:
        raise RuntimeError(f"message type {cls.TYPE!r} missing or registered twice")
    _REGISTRY[cls.TYPE] = cls
    return cls


@register
@dataclass(frozen=True, slots=True)
class TextIn(Message):
    """Raw English from a producer (say CLI, pipe, hook, Python client) to ingest.

    `final` closes the producer's message: ingest flushes a sentence that never ended. `id`, chosen
    by the producer, lets it know: ingest journals the text under it and says `accepted` (or
    `refused`, with why) on the tap with that id; the producer sends it again, same id, until it
    hears, and ingest takes each id once."""

    TYPE: ClassVar[str] = "text"
    stream: str
    text: str
    final: bool = True
    source: str = "client"
    id: str = ""
    stamps: Stamps = ()


@register
@dataclass(frozen=True, slots=True)
class Sentence(Message):
    """One speakable English sentence, ingest → translate. Identity is (stream, seq); attempt
    counts re-sends of the same sentence. `summary` (brief mode): the text is a whole turn's
    sentences, one a line, to be said as a short Japanese summary of them."""

    TYPE: ClassVar[str] = "sentence"
    LIMITS: ClassVar[dict[str, Limit]] = {**Message.LIMITS, "text": (0, MAX_SENTENCE_CHARS)}
    stream: str
    seq: int
    text: str
    attempt: int = 0
    summary: bool = False
    stamps: Stamps = ()


@register
@dataclass(frozen=True, slots=True)
class Clause(Message):
    """One Japanese clause of a sentence, translate → synthesize; `last` closes the sentence."""

    TYPE: ClassVar[str] = "clause"
    LIMITS: ClassVar[dict[str, Limit]] = {**Message.LIMITS, "text": (0, MAX_CLAUSE_CHARS)}
    stream: str
    seq: int
    index: int
    text: str
    last: bool
    text_en: str = ""
    attempt: int = 0
    stamps: Stamps = ()


@register
@dataclass(frozen=True, slots=True)
class AudioChunk(Message):
    """A piece of one sentence's speech, synthesize → playback; PCM rides in frame 1."""

    TYPE: ClassVar[str] = "audio"
    PAYLOAD_FIELD: ClassVar[str | None] = "pcm"
    stream: str
    seq: int
    index: int
    last: bool
    rate_hz: int
    pcm: bytes = field(repr=False)
    channels: int = 1
    sample_format: str = "f32le"
    text_ja: str = ""
    text_en: str = ""
    attempt: int = 0
    stamps: Stamps = ()

    def validate(self) -> None:
        width = SAMPLE_BYTES.get(self.sample_format)
        if width is None:
            raise BadMessage(f"audio: unknown sample_format {self.sample_format!r}")
        # rate_hz and channels: their LIMITS, at decode
        if len(self.pcm) % (width * self.channels):
            raise BadMessage(f"audio: {len(self.pcm)} payload bytes is not whole frames")

    @property
    def samples(self) -> int:
        return len(self.pcm) // (SAMPLE_BYTES[self.sample_format] * self.channels)

    @property
    def duration_s(self) -> float:
        return self.samples / self.rate_hz

    def __str__(self) -> str:
        return f"<audio stream={self.stream} seq={self.seq} index={self.index} bytes={len(self.pcm)}>"


@register
@dataclass(frozen=True, slots=True)
class Played(Message):
    """Playback's ack: the sentence's last sample has left (or was written). Goes back to ingest."""

    TYPE: ClassVar[str] = "played"
    stream: str
    seq: int
    samples: int
    rate_hz: int
    first_sample_wall_ns: int
    last_sample_wall_ns: int
    text_en: str = ""
    text_ja: str = ""
    wav_path: str = ""
    attempt: int = 0
    stamps: Stamps = ()


@register
@dataclass(frozen=True, slots=True)
class Failed(Message):
    """A sentence that a stage could not finish, with the stage and the reason. Goes to ingest."""

    TYPE: ClassVar[str] = "failed"
    stream: str
    seq: int
    stage: str
    reason: str
    text_en: str = ""
    attempt: int = 0
    stamps: Stamps = ()

    @classmethod
    def of(cls, msg: Message, stage: str, reason: str) -> Failed:
        """The failure of the sentence `msg` belongs to, with its ids and stamps (so a failure
        sent later, from another message's turn, still carries its own sentence's times)."""
        text_en = msg.text if isinstance(msg, Sentence) else str(getattr(msg, "text_en", ""))
        return cls(
            stream=getattr(msg, "stream", ""),
            seq=int(getattr(msg, "seq", -1)),
            stage=stage,
            reason=reason[:MAX_REASON_CHARS],  # an engine's message may be long: the ack must decode
            text_en=text_en,
            attempt=int(getattr(msg, "attempt", 0)),
            stamps=getattr(msg, "stamps", ()),
        )


@register
@dataclass(frozen=True, slots=True)
class Cancel(ControlMessage):
    """Drop queued and in-flight work of one stream ("" = every stream), at every stage."""

    TYPE: ClassVar[str] = "cancel"
    stream: str = ""
    reason: str = ""
    stamps: Stamps = ()


@register
@dataclass(frozen=True, slots=True)
class Flush(ControlMessage):
    """Emit what is held back for a stream now (an unfinished sentence, a jitter buffer)."""

    TYPE: ClassVar[str] = "flush"
    stream: str = ""
    stamps: Stamps = ()


@register
@dataclass(frozen=True, slots=True)
class Resent(ControlMessage):
    """Ingest sent sentence (stream, seq) again as `attempt`: every stage drops what it still
    holds or has queued of older attempts (control overtakes the data queued behind it)."""

    TYPE: ClassVar[str] = "resent"
    stream: str
    seq: int
    attempt: int
    stamps: Stamps = ()


@register
@dataclass(frozen=True, slots=True)
class GivenUp(ControlMessage):
    """Ingest, the journal's owner, gave sentence (stream, seq) up for good (its stages failed it
    past the retry budget, or it was not played within the pipeline's give_up_s): no stage waits
    for it any more, and playback goes on past it. The only word that lets a stream skip a seq."""

    TYPE: ClassVar[str] = "given_up"
    stream: str
    seq: int
    reason: str = ""
    stamps: Stamps = ()


@register
@dataclass(frozen=True, slots=True)
class Pause(ControlMessage):
    """Hold playback where it is (the sentence in hand and the queue are kept) until Resume."""

    TYPE: ClassVar[str] = "pause"
    stamps: Stamps = ()


@register
@dataclass(frozen=True, slots=True)
class Resume(ControlMessage):
    """Go on playing from where Pause held it."""

    TYPE: ClassVar[str] = "resume"
    stamps: Stamps = ()


MAX_VOLUME = 2.0


@register
@dataclass(frozen=True, slots=True)
class Volume(ControlMessage):
    """Set playback's output gain: 0.0 silent, 1.0 as synthesized, at most MAX_VOLUME."""

    TYPE: ClassVar[str] = "volume"
    LIMITS: ClassVar[dict[str, Limit]] = {**Message.LIMITS, "level": (0.0, MAX_VOLUME)}
    level: float
    stamps: Stamps = ()


MIN_SPEED, MAX_SPEED = 0.5, 2.0
MODES = ("full", "brief")  # what a turn's answer becomes: every sentence, or (when long) a summary


@register
@dataclass(frozen=True, slots=True)
class Mode(ControlMessage):
    """Say every sentence of an answer ("full"), or a short summary of a long one ("brief"), for
    one stream or every stream (""); ingest acts on it from the next turn on."""

    TYPE: ClassVar[str] = "mode"
    mode: str
    stream: str = ""
    stamps: Stamps = ()

    def validate(self) -> None:
        if self.mode not in MODES:
            raise BadMessage(f"mode: {self.mode!r} is not one of {', '.join(MODES)}")


@register
@dataclass(frozen=True, slots=True)
class Speed(ControlMessage):
    """Speak faster or slower (1.0 as the voice speaks), one stream or every stream (""); the
    voice engine changes its own durations, so the pitch stays."""

    TYPE: ClassVar[str] = "speed"
    LIMITS: ClassVar[dict[str, Limit]] = {**Message.LIMITS, "factor": (MIN_SPEED, MAX_SPEED)}
    factor: float
    stream: str = ""
    stamps: Stamps = ()


@register
@dataclass(frozen=True, slots=True)
class TapEvent(Message):
    """What a node tells the tap. `detail` is a small map of plain values."""

    TYPE: ClassVar[str] = "event"
    LIMITS: ClassVar[dict[str, Limit]] = {**Message.LIMITS, "seq": (-1, MAX_ID)}  # -1: about no sentence
    node: str
    kind: str
    stream: str = ""
    seq: int = -1
    attempt: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    wall_ns: int = 0
    mono_ns: int = 0
    stamps: Stamps = ()

    def validate(self) -> None:
        kind_of(self.kind)  # a closed set: bus/events.py

    def to_json(self) -> dict[str, Any]:
        """This event as plain JSON values (what `stream-tts tap` prints): valid JSON always. In
        `detail`, a float that is NaN or infinite becomes null (JSON has no such numbers: Python's
        json would write the token NaN, which no strict parser reads), bytes become text (UTF-8,
        bad bytes as U+FFFD), map keys become strings."""
        out: dict[str, Any] = {
            "node": self.node,
            "kind": self.kind,
            "wall_ns": self.wall_ns,
            "mono_ns": self.mono_ns,
        }
        if self.stream:
            out.update(stream=self.stream, seq=self.seq, attempt=self.attempt)
        if self.detail:
            out["detail"] = json_safe(self.detail)
        if self.stamps:
            out["stamps"] = [s.to_wire() for s in self.stamps]
        return out


def json_safe(value: Any) -> Any:
    """`value` as what JSON can hold: non-finite floats -> None, bytes -> str, map keys -> str,
    tuples -> lists, anything else (a msgpack ext type) -> its repr. Walked without recursion: a
    decoded detail is at most bus/wire.py's MAX_MAP_DEPTH deep, one made in-process need not be."""
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]  # (value, container to put it in, key)
    while stack:
        v, into, key = stack.pop()
        t = type(v)
        if t is str or t is int or t is bool or v is None:
            out = v
        elif t is float:
            out = v if math.isfinite(v) else None
        elif isinstance(v, bytes | bytearray | memoryview):
            out = bytes(v).decode("utf-8", "replace")
        elif isinstance(v, dict):
            out = {_json_key(k): None for k in v}  # in order: filled in as the stack unwinds
            stack.extend((item, out, _json_key(k)) for k, item in v.items())
        elif isinstance(v, list | tuple):
            out = [None] * len(v)
            stack.extend((item, out, i) for i, item in enumerate(v))
        elif isinstance(v, str):  # a StrEnum (a Kind): its value
            out = str(v)
        elif isinstance(v, int | float):  # an IntEnum, a numpy float64: as the plain number
            out = json_safe(float(v) if isinstance(v, float) else int(v))
        else:
            out = repr(v)
        into[key] = out
    return root[0]


def _json_key(key: Any) -> str:
    if type(key) is str:
        return key
    if isinstance(key, bytes):
        return key.decode("utf-8", "replace")
    return str(key)


def message_types() -> dict[str, type[Message]]:
    return dict(_REGISTRY)


_local = threading.local()


def _packer() -> msgpack.Packer:
    """One msgpack Packer per thread (a Packer is not thread-safe; making one per message costs)."""
    packer = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    return packer


def encode(msg: Message, extra_stamps: Stamps = ()) -> list[bytes]:
    """The frames of one message (header first, payload second when the type has one)."""
    return msg.to_frames(extra_stamps)


def decode(frames: Sequence[bytes | memoryview | Any]) -> Message:
    """One message from its frames, or BadMessage naming what is wrong."""
    if not 1 <= len(frames) <= 2:
        raise BadMessage(f"expected 1 or 2 frames, got {len(frames)}")
    raw = _as_bytes(frames[0])
    if len(raw) > MAX_HEADER_BYTES:
        raise BadMessage(f"header of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}")
    payload = _as_bytes(frames[1]) if len(frames) == 2 else None
    if payload is not None and len(payload) > MAX_PAYLOAD_BYTES:
        raise BadMessage(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except UnicodeDecodeError as exc:
        raise BadMessage(f"header holds non-UTF-8 text: {exc.reason}") from None
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise BadMessage(f"header is not msgpack: {type(exc).__name__}: {exc}"[:200]) from None
    if not isinstance(header, dict):
        raise BadMessage("header is not a map")
    version = header.get(KEY_VERSION)
    if type(version) is not int:
        raise BadMessage("header has no integer 'v'")
    kind = header.get(KEY_TYPE)
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise BadMessage(f"unknown message type {kind!r}")
    if version != cls.VERSION:
        raise BadMessage(f"{kind}: unsupported version {version} (this build speaks {cls.VERSION})")
    try:
        return cls.from_header(header, payload)
    except BadMessage:
        raise
    except (TypeError, ValueError) as exc:
        raise BadMessage(f"{kind}: {exc}") from None


def _as_bytes(frame: Any) -> bytes:
    if isinstance(frame, bytes):
        return frame
    if isinstance(frame, memoryview | bytearray):
        return bytes(frame)
    if hasattr(frame, "bytes"):  # zmq.Frame
        return bytes(frame.bytes)
    raise BadMessage(f"frame of type {type(frame).__name__} is not bytes")
