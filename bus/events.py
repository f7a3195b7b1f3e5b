"""What nodes say on the tap: every event kind, and the typed details of the events that other
nodes act on.

Kinds are a closed set (`Kind`): a node cannot publish a kind the protocol does not name, and
`decode()` refuses a tap event of an unknown kind as it refuses any other bad message. Most
events are for people and tools (`stream-tts tap`, `up`, `status`, the benches), and their
`detail` is a free map of plain values. A few are a contract between nodes: translate holds its
decoding while synthesize makes a sentence's first chunk, on the word of synthesize's `started`,
`text_wait` and `first_chunk`. Those details are dataclasses here, written and read through
`detail()` and `from_detail()`, so a change on one side that the other does not understand is a
`BadMessage`, not a silently wrong hold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, ClassVar

from bus.wire import BadMessage


class Kind(StrEnum):
    """Every tap event kind, with who says it."""

    # every node (the runtime)
    READY = "ready"  # engine loaded, node serving
    HEARTBEAT = "heartbeat"  # every HEARTBEAT_S: state and counters
    FINISHED = "finished"  # a node is done with one sentence (with its timings)
    DROPPED = "dropped"  # a bad message was refused
    ERROR = "error"  # an engine error (fatal: false) or a crash (fatal: true)
    STALE = "stale"  # a cancelled, superseded or duplicate message, not acted on
    ENGINE = "engine"  # what the engine loaded and how (device, graphs, compile)
    BACKEND = "backend"  # translate: llama.cpp's backend and threads
    WARNING = "warning"  # something works, but not as configured
    # ingest (the journal's owner)
    ACCEPTED = "accepted"  # a producer's text (its `id`) is journaled: the producer may go on
    REFUSED = "refused"  # a producer's text could not be taken (why: a full disk, ...); say so
    JOURNAL = "journal"  # the journal's state at start
    RETRY = "retry"  # a sentence re-sent past its deadline
    DUPLICATE = "duplicate"  # a sentence already journaled, or an ack already counted
    ACK = "ack"  # played / failed recorded
    CANCELLED = "cancelled"  # sentences dropped by a cancel
    IGNORED = "ignored"  # text or an ack that does not apply
    MODE = "mode"  # a stream's (or every stream's) full / brief mode taken
    # synthesize (a contract with translate: see the dataclasses below)
    STARTED = "started"
    TEXT_WAIT = "text_wait"
    FIRST_CHUNK = "first_chunk"
    VOICE = "voice"  # the voice in use
    SPEED = "speed"  # a speaking speed taken (stream "" = every stream)
    # playback
    SINK = "sink"  # device or WAV files
    FAILED = "failed"  # a sentence that will not be played
    SKIPPED = "skipped"  # seqs a stream went on without (ingest gave them up, or its word was lost)
    GIVEN_UP = "given_up"  # ingest's GivenUp taken: the stream will go on past that seq
    UNDERRUN = "underrun"
    OUTPUT = "output"  # what the device stream reports about itself
    STREAM_OPEN = "stream_open"
    STREAM_CLOSED = "stream_closed"
    NO_AUDIO_DEVICE = "no_audio_device"
    DEVICE_LOST = "device_lost"
    REOPENED = "reopened"
    VOLUME = "volume"
    PAUSE = "pause"
    PAUSED = "paused"
    RESUME = "resume"
    RESUMED = "resumed"
    STOP = "stop"
    # producers
    PIPE_STATS = "pipe_stats"  # `stream-tts pipe`: lines read, spoken, skipped


def kind_of(value: object) -> Kind:
    """The Kind a wire value names, or BadMessage."""
    if isinstance(value, str) and value in Kind.__members__.values():
        return Kind(value)
    raise BadMessage(f"event: unknown kind {value!r}")


FIELD_TYPES: dict[str, type | tuple[type, ...]] = {"str": str, "float": (int, float), "int": int}


@dataclass(frozen=True)
class Detail:
    """The typed detail of an event that another node acts on."""

    KIND: ClassVar[Kind]

    def detail(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any]) -> Any:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        missing = [name for name in fields if name not in detail]
        if missing:
            raise BadMessage(f"{cls.KIND}: detail lacks {', '.join(missing)}")
        values = {name: detail[name] for name in fields}
        for name, f in fields.items():
            want = FIELD_TYPES[str(f.type)]
            if not isinstance(values[name], want) or isinstance(values[name], bool):
                raise BadMessage(f"{cls.KIND}: {name} is {type(values[name]).__name__}, not {f.type}")
        return cls(**values)


@dataclass(frozen=True)
class SynthStarted(Detail):
    """synthesize took a sentence; where it runs (translate holds only for a GPU it shares)."""

    KIND: ClassVar[Kind] = Kind.STARTED
    host: str  # socket.gethostname() of the synthesize process
    device: str  # torch device type: "cuda", "mps", "cpu"

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any]) -> SynthStarted:
        return super().from_detail(detail)


@dataclass(frozen=True)
class TextWait(Detail):
    """synthesize needs the sentence's next clause before it can make its first chunk."""

    KIND: ClassVar[Kind] = Kind.TEXT_WAIT

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any]) -> TextWait:
        return super().from_detail(detail)


@dataclass(frozen=True)
class FirstChunk(Detail):
    """synthesize sent the sentence's first audio chunk."""

    KIND: ClassVar[Kind] = Kind.FIRST_CHUNK
    first_chunk_ms: float  # Milliseconds from taking the sentence to its first chunk

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any]) -> FirstChunk:
        return super().from_detail(detail)
