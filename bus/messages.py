"""Every message on the stream-tts bus, and the only way in or out of the wire (`encode`/`decode`).

Wire form, one ZeroMQ multipart message:
  frame 0  msgpack map: {"v": VERSION, "type": TYPE, <fields>}   (at most MAX_HEADER_BYTES)
  frame 1  raw payload bytes, only for types that carry one (PCM audio; at most MAX_PAYLOAD_BYTES)
Audio never travels as a msgpack list of numbers: its format, rate and channels are header fields.

`decode` turns every malformed input (bad msgpack, unknown version or type, missing or wrong-typed
field, oversize frame, non-UTF-8 text, a payload that does not fit its format) into one `BadMessage`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack

from bus.events import kind_of
from bus.wire import PAYLOAD, PLAIN, STAMPS, BadMessage, Stamp, Stamps, check, decoder, encoder, schema  # noqa: F401 (re-exported)

VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

# Header keys written once: the envelope's own, then each field under its dataclass name.
KEY_VERSION = "v"
KEY_TYPE = "type"

# Bytes per sample of each PCM format an AudioChunk may carry.
SAMPLE_BYTES = {"f32le": 4, "s16le": 2}


@dataclass(frozen=True, slots=True)
class Message:
    """Base of all message types: a TYPE string, the schema VERSION, and the stage stamps."""

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = VERSION
    PAYLOAD_FIELD: ClassVar[str | None] = None

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

    `final` closes the producer's message: ingest flushes a sentence that never ended."""

    TYPE: ClassVar[str] = "text"
    stream: str
    text: str
    final: bool = True
    source: str = "client"
    stamps: Stamps = ()


@register
@dataclass(frozen=True, slots=True)
class Sentence(Message):
    """One speakable English sentence, ingest → translate. Identity is (stream, seq); attempt
    counts re-sends of the same sentence."""

    TYPE: ClassVar[str] = "sentence"
    stream: str
    seq: int
    text: str
    attempt: int = 0
    stamps: Stamps = ()


@register
@dataclass(frozen=True, slots=True)
class Clause(Message):
    """One Japanese clause of a sentence, translate → synthesize; `last` closes the sentence."""

    TYPE: ClassVar[str] = "clause"
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
        if not 1000 <= self.rate_hz <= 384_000:
            raise BadMessage(f"audio: rate_hz {self.rate_hz} out of range")
        if not 1 <= self.channels <= 8:
            raise BadMessage(f"audio: channels {self.channels} out of range")
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
            reason=reason,
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
    level: float
    stamps: Stamps = ()

    def validate(self) -> None:
        if not 0.0 <= self.level <= MAX_VOLUME:  # also refuses NaN
            raise BadMessage(f"volume: level {self.level} is not within 0..{MAX_VOLUME}")


@register
@dataclass(frozen=True, slots=True)
class TapEvent(Message):
    """What a node tells the tap. `detail` is a small map of plain values."""

    TYPE: ClassVar[str] = "event"
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
        out: dict[str, Any] = {
            "node": self.node,
            "kind": self.kind,
            "wall_ns": self.wall_ns,
            "mono_ns": self.mono_ns,
        }
        if self.stream:
            out.update(stream=self.stream, seq=self.seq, attempt=self.attempt)
        if self.detail:
            out["detail"] = self.detail
        if self.stamps:
            out["stamps"] = [s.to_wire() for s in self.stamps]
        return out


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
