"""The wire format: exact frames, round trips of every type, and one BadMessage for every bad input."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.events import FirstChunk, Kind, SynthStarted, TextWait
from bus.messages import (
    MAX_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    AudioChunk,
    BadMessage,
    Cancel,
    Clause,
    ControlMessage,
    Failed,
    Flush,
    GivenUp,
    Mode,
    Pause,
    Played,
    Resent,
    Resume,
    Sentence,
    Speed,
    Stamp,
    TapEvent,
    TextIn,
    Volume,
    decode,
    encode,
    message_types,
)

STAMP = Stamp("ingest", 1_700_000_000_000_000_000, 5_000, 1_700_000_000_000_100_000, 105_000)
PCM = np.linspace(-0.5, 0.5, 480, dtype="<f4").tobytes()

SAMPLES = [
    TextIn(stream="s1", text="Hello there. How are you?", final=False, source="say", id="a1b2"),
    Sentence(stream="s1", seq=7, text="Hello there.", attempt=1, stamps=(STAMP,)),
    Clause(stream="s1", seq=7, index=0, text="こんにちは、", last=False, text_en="Hello there."),
    AudioChunk(stream="s1", seq=7, index=2, last=True, rate_hz=24000, pcm=PCM, text_ja="こんにちは"),
    Played(stream="s1", seq=7, samples=480, rate_hz=24000, first_sample_wall_ns=1, last_sample_wall_ns=2),
    Failed(stream="s1", seq=7, stage="translate", reason="model not loaded"),
    Cancel(stream="s1", reason="new turn"),
    Flush(stream=""),
    Resent(stream="s1", seq=7, attempt=2),
    GivenUp(stream="s1", seq=7, reason="failed 3 times"),
    Pause(),
    Resume(),
    Volume(level=0.5),
    Speed(factor=1.5, stream="s1"),
    Mode(mode="brief", stream="s1"),
    TapEvent(node="ingest", kind="finished", stream="s1", seq=7, detail={"ms": 1.5, "text": "x"}),
]


def test_every_registered_type_has_a_sample() -> None:
    assert {type(m) for m in SAMPLES} == set(message_types().values())


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m.TYPE)
def test_round_trip(msg: Any) -> None:
    assert decode(encode(msg)) == msg


def test_sentence_frames_are_one_msgpack_header() -> None:
    frames = encode(Sentence(stream="s", seq=1, text="Hi.", stamps=(STAMP,)))
    # One frame: the header map, version and type first, then the fields, stamps as plain lists.
    assert len(frames) == 1
    header = msgpack.unpackb(frames[0])
    assert list(header)[:2] == ["v", "type"]
    assert header == {
        "v": 1,
        "type": "sentence",
        "stream": "s",
        "seq": 1,
        "text": "Hi.",
        "attempt": 0,
        "summary": False,
        "stamps": [list(dataclasses.astuple(STAMP))],
    }


def test_audio_travels_as_a_raw_second_frame() -> None:
    chunk = AudioChunk(stream="s", seq=1, index=0, last=False, rate_hz=24000, pcm=PCM)
    header_frame, payload = encode(chunk)
    # Frame 1 is the PCM bytes as they are; the header says how to read them and holds no samples.
    assert payload == PCM
    header = msgpack.unpackb(header_frame)
    assert "pcm" not in header
    assert (header["sample_format"], header["rate_hz"], header["channels"]) == ("f32le", 24000, 1)
    assert len(header_frame) < 200
    assert chunk.samples == 480 and chunk.duration_s == pytest.approx(0.02)


def test_control_messages_are_marked_for_the_runtime() -> None:
    assert isinstance(Cancel(), ControlMessage) and isinstance(Flush(), ControlMessage)
    assert not isinstance(Sentence(stream="s", seq=0, text="x"), ControlMessage)


def _header(**fields: Any) -> bytes:
    return msgpack.packb({"v": 1, "type": "sentence", "stream": "s", "seq": 1, "text": "x", **fields})


@pytest.mark.parametrize(
    "frames, reason",
    [
        ([], "expected 1 or 2 frames"),
        ([b"a", b"b", b"c"], "expected 1 or 2 frames"),
        ([b"\xc1"], "not msgpack"),
        ([b"\x93\x01\x02"], "not msgpack"),
        ([msgpack.packb([1, 2])], "not a map"),
        ([msgpack.packb({"type": "sentence"})], "no integer 'v'"),
        ([msgpack.packb({"v": 2, "type": "sentence", "stream": "s", "seq": 1, "text": "x"})], "version 2"),
        ([msgpack.packb({"v": 1, "type": "nonsense"})], "unknown message type"),
        ([msgpack.packb({"v": 1, "type": "sentence", "stream": "s", "text": "x"})], "missing field 'seq'"),
        ([_header(seq="1")], "field 'seq' must be int"),
        ([_header(seq=True)], "field 'seq' must be int"),
        ([_header(text=b"bytes")], "field 'text' must be str"),
        ([_header(stamps=[["a", 1, 2]])], "stamps"),
        ([_header(stamps="x")], "list of stamps"),
        ([_header(), b"payload"], "carries no payload"),
        (
            [
                msgpack.packb(
                    {
                        "v": 1,
                        "type": "audio",
                        "stream": "s",
                        "seq": 1,
                        "index": 0,
                        "last": True,
                        "rate_hz": 24000,
                    }
                )
            ],
            "missing payload",
        ),
        (
            [
                msgpack.packb(
                    {
                        "v": 1,
                        "type": "audio",
                        "stream": "s",
                        "seq": 1,
                        "index": 0,
                        "last": True,
                        "rate_hz": 24000,
                    }
                ),
                b"123",
            ],
            "not whole frames",
        ),
        (
            [
                msgpack.packb(
                    {
                        "v": 1,
                        "type": "audio",
                        "stream": "s",
                        "seq": 1,
                        "index": 0,
                        "last": True,
                        "rate_hz": 24000,
                        "sample_format": "mp3",
                    }
                ),
                b"1234",
            ],
            "sample_format",
        ),
        ([b"\x81\xa1v\x01" + b"\xc4" + bytes([0])], "not msgpack"),
        ([b"\x82\xa1v\x01\xa4type\xa8sentence"[:-3] + b"\xff\xfe\xfd"], "non-UTF-8"),
        (
            [
                msgpack.packb(
                    {"v": 1, "type": "sentence", "stream": "s", "seq": 1, "text": "x" * MAX_HEADER_BYTES}
                )
            ],
            "exceeds",
        ),
        ([_header(), b"\0" * (MAX_PAYLOAD_BYTES + 1)], "exceeds"),
        ([msgpack.packb({1: 2})], "not msgpack"),
        ([12345], "not bytes"),
    ],
)
def test_decode_rejects_malformed_input(frames: list[Any], reason: str) -> None:
    with pytest.raises(BadMessage, match=reason):
        decode(frames)


def test_decode_ignores_unknown_extra_fields() -> None:
    # A newer sender of the same version may add optional fields; they must not break us.
    assert decode([_header(extra=1)]) == Sentence(stream="s", seq=1, text="x")


def test_decoded_messages_are_the_frozen_dataclasses_init_makes() -> None:
    # decode fills the slots without __init__ (bus/wire.py): the result must not differ.
    got = decode([_header()])
    assert got == Sentence(stream="s", seq=1, text="x") and got.attempt == 0 and got.stamps == ()
    assert hash(got) == hash(Sentence(stream="s", seq=1, text="x"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.text = "y"  # type: ignore[misc]
    stamp = decode(encode(SAMPLES[1])).stamps[0]  # type: ignore[attr-defined]
    assert stamp == STAMP and type(stamp) is Stamp
    with pytest.raises(dataclasses.FrozenInstanceError):
        stamp.stage = "y"  # type: ignore[misc]
    # A field left out gets its default; a default_factory's product is new each time.
    header = {"v": 1, "type": "event", "node": "n", "kind": "ready"}
    a, b = (decode([msgpack.packb(header)]) for _ in range(2))
    assert a == TapEvent(node="n", kind="ready") and a.detail == {} and a.detail is not b.detail  # type: ignore[attr-defined]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=0, max_size=3))
def test_decode_any_bytes_gives_a_message_or_bad_message(frames: list[bytes]) -> None:
    with contextlib.suppress(BadMessage):
        decode(frames)


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(sorted(message_types())),
    st.dictionaries(st.text(max_size=12), _values, max_size=8),
    st.one_of(st.none(), st.binary(max_size=64)),
)
def test_decode_mutated_headers_never_raise_anything_else(
    kind: str, fields: dict[str, Any], payload: bytes | None
) -> None:
    frames = [msgpack.packb({"v": 1, "type": kind, **fields})]
    if payload is not None:
        frames.append(payload)
    try:
        msg = decode(frames)
    except BadMessage:
        return
    assert decode(encode(msg)) == msg


def test_failed_of_carries_the_sentence_ids_text_and_stamps() -> None:
    s = Sentence(stream="s", seq=4, text="Hello.", attempt=2, stamps=(STAMP,))
    assert Failed.of(s, "translate", "why") == Failed(
        stream="s", seq=4, stage="translate", reason="why", text_en="Hello.", attempt=2, stamps=(STAMP,)
    )
    c = Clause(stream="s", seq=4, index=1, text="こんにちは。", last=True, text_en="Hello.", attempt=2)
    assert Failed.of(c, "synthesize", "why").text_en == "Hello."


def test_decode_refuses_a_tap_event_of_a_kind_the_protocol_does_not_name() -> None:
    frames = [msgpack.packb({"v": 1, "type": "event", "node": "n", "kind": "made_up"})]
    with pytest.raises(BadMessage, match="unknown kind 'made_up'"):
        decode(frames)


def test_every_kind_round_trips_on_a_tap_event() -> None:
    for kind in Kind:
        ev = decode(encode(TapEvent(node="n", kind=kind)))
        assert isinstance(ev, TapEvent) and ev.kind == kind


def test_the_synthesize_translate_contract_round_trips_and_refuses_what_it_cannot_read() -> None:
    started = SynthStarted(host="box", device="cuda")
    ev = decode(encode(TapEvent(node="synthesize", kind=started.KIND, detail=started.detail())))
    assert isinstance(ev, TapEvent) and SynthStarted.from_detail(ev.detail) == started
    assert FirstChunk.from_detail(FirstChunk(12.5).detail()).first_chunk_ms == 12.5
    assert FirstChunk.from_detail({"first_chunk_ms": 12}).first_chunk_ms == 12  # an int is a float
    assert TextWait.from_detail({}) == TextWait()
    with pytest.raises(BadMessage, match="started: detail lacks device"):
        SynthStarted.from_detail({"host": "box"})
    with pytest.raises(BadMessage, match="started: host is int, not str"):
        SynthStarted.from_detail({"host": 3, "device": "cpu"})
    with pytest.raises(BadMessage, match="first_chunk: first_chunk_ms is bool"):
        FirstChunk.from_detail({"first_chunk_ms": True})


# ---- range checks at decode (issue #23: no input crashes a node) ---------------------------------
# A valid header of each type, to which one field at a time is set out of (or just inside) range.
VALID_HEADERS: dict[str, dict[str, Any]] = {
    "text": {"stream": "s", "text": "x"},
    "sentence": {"stream": "s", "seq": 1, "text": "x"},
    "clause": {"stream": "s", "seq": 1, "index": 0, "text": "x", "last": True},
    "audio": {"stream": "s", "seq": 1, "index": 0, "last": True, "rate_hz": 24000},
    "played": {
        "stream": "s",
        "seq": 1,
        "samples": 0,
        "rate_hz": 24000,
        "first_sample_wall_ns": 0,
        "last_sample_wall_ns": 0,
    },
    "failed": {"stream": "s", "seq": 1, "stage": "translate", "reason": "r"},
    "cancel": {},
    "volume": {"level": 1.0},
    "event": {"node": "n", "kind": "ready"},
}


def _frames(kind: str, **fields: Any) -> list[bytes]:
    frames = [msgpack.packb({"v": 1, "type": kind, **VALID_HEADERS[kind], **fields})]
    if kind == "audio":
        frames.append(b"")
    return frames


def _stamp(stage: str = "ingest", ns: int = 5) -> list[Any]:
    return [stage, ns, ns, ns, ns]


def _nested(depth: int) -> dict[str, Any]:
    detail: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        detail = {"d": detail}
    return detail


OUT_OF_RANGE = [
    # ids: >= 0 and exact in a float64 (JSON, SQLite's INTEGER), never 2**64 - 1
    ("played", "seq", 2**64 - 1, r"played: field 'seq' = 18446744073709551615 is not within 0\.\.2\*\*53-1"),
    ("sentence", "seq", -1, r"sentence: field 'seq' = -1 is not within 0\.\.2\*\*53-1"),
    ("sentence", "seq", 2**53, r"field 'seq' = 9007199254740992 is not within"),
    ("sentence", "attempt", -1, r"field 'attempt' = -1 is not within 0\.\."),
    ("failed", "attempt", 2**63, r"field 'attempt' = 9223372036854775808"),
    ("clause", "index", -1, r"clause: field 'index' = -1 is not within"),
    ("audio", "index", 2**53, r"audio: field 'index'"),
    ("event", "seq", -2, r"event: field 'seq' = -2 is not within -1\.\."),
    ("event", "attempt", -1, r"event: field 'attempt'"),
    # sizes, counts, rates, channels
    ("played", "samples", -1, r"played: field 'samples' = -1"),
    ("played", "rate_hz", 0, r"played: field 'rate_hz' = 0 is not within 8000\.\.192000"),
    ("audio", "rate_hz", 7999, r"audio: field 'rate_hz' = 7999 is not within 8000\.\.192000"),
    ("audio", "rate_hz", 192001, r"audio: field 'rate_hz' = 192001 is not within 8000\.\.192000"),
    ("audio", "channels", 0, r"audio: field 'channels' = 0 is not within 1\.\.8"),
    ("audio", "channels", 9, r"audio: field 'channels' = 9 is not within 1\.\.8"),
    # times: ns since the epoch / since boot, >= 0 and inside SQLite's signed 64 bits
    ("played", "first_sample_wall_ns", -1, r"field 'first_sample_wall_ns' = -1 is not within 0\.\.2\*\*63-1"),
    ("played", "last_sample_wall_ns", 2**63, r"field 'last_sample_wall_ns' = 9223372036854775808"),
    ("event", "wall_ns", -1, r"event: field 'wall_ns'"),
    ("event", "mono_ns", 2**64 - 1, r"event: field 'mono_ns'"),
    # floats: finite
    ("volume", "level", float("nan"), r"volume: field 'level' = nan is not finite"),
    ("volume", "level", float("inf"), r"volume: field 'level' = inf is not finite"),
    ("volume", "level", -float("inf"), r"volume: field 'level' = -inf is not finite"),
    ("volume", "level", 2.5, r"volume: field 'level' = 2\.5 is not within 0\.0\.\.2\.0"),
    # text: bounded in characters
    ("text", "text", "x" * 16_385, r"text: field 'text' has 16385 characters, more than 16384"),
    ("sentence", "text", "x" * 2001, r"sentence: field 'text' has 2001 characters, more than 2000"),
    ("clause", "text", "あ" * 501, r"clause: field 'text' has 501 characters, more than 500"),
    ("clause", "text", "あ" * 20_000, r"clause: field 'text' has 20000 characters, more than 500"),
    ("clause", "text_en", "x" * 2001, r"clause: field 'text_en' has 2001 characters"),
    ("audio", "text_ja", "あ" * 16_385, r"audio: field 'text_ja' has 16385 characters"),
    ("sentence", "stream", "s" * 257, r"sentence: field 'stream' has 257 characters, more than 256"),
    ("cancel", "stream", "s" * 257, r"cancel: field 'stream' has 257"),
    ("failed", "stage", "x" * 65, r"failed: field 'stage' has 65 characters, more than 64"),
    ("failed", "reason", "x" * 2001, r"failed: field 'reason' has 2001 characters, more than 2000"),
    ("text", "source", "x" * 65, r"text: field 'source' has 65 characters"),
    ("event", "node", "x" * 65, r"event: field 'node' has 65 characters"),
    ("played", "wav_path", "/" * 4097, r"played: field 'wav_path' has 4097 characters, more than 4096"),
    # stamps: a few per message, each a short stage name and four ns times in range
    ("sentence", "stamps", [_stamp()] * 33, r"stamps: 33 stamps, more than 32"),
    ("sentence", "stamps", [_stamp(ns=-1)], r"stamps: a stamp's times are ns within 0\.\.2\*\*63-1"),
    ("sentence", "stamps", [_stamp(ns=2**64 - 1)], r"stamps: a stamp's times are ns within"),
    ("sentence", "stamps", [_stamp("x" * 65)], r"stamps: a stamp's stage has 65 characters, more than 64"),
    # a tap event's detail: a small map
    ("event", "detail", _nested(9), r"event: field 'detail' nests deeper than 8"),
    (
        "event",
        "detail",
        {str(i): i for i in range(257)},
        r"event: field 'detail' has 257 keys, more than 256",
    ),
]


@pytest.mark.parametrize(("kind", "name", "value", "reason"), OUT_OF_RANGE, ids=lambda x: str(x)[:20])
def test_decode_range_checks_every_field(kind: str, name: str, value: Any, reason: str) -> None:
    with pytest.raises(BadMessage, match=reason):
        decode(_frames(kind, **{name: value}))


IN_RANGE = [
    ("played", "seq", 2**53 - 1),
    ("sentence", "seq", 0),
    ("event", "seq", -1),  # an event about no sentence
    ("audio", "rate_hz", 8000),
    ("audio", "rate_hz", 192_000),
    ("audio", "channels", 1),
    ("audio", "channels", 8),
    ("played", "first_sample_wall_ns", 2**63 - 1),
    ("volume", "level", 0),
    ("volume", "level", 2.0),
    ("text", "text", "x" * 16_384),
    ("sentence", "text", "x" * 2000),
    ("clause", "text", "あ" * 500),
    ("sentence", "stream", "s" * 256),
    ("sentence", "stamps", [_stamp(ns=2**63 - 1)] * 32),
    ("event", "detail", _nested(8)),
    ("event", "detail", {"nan": float("nan"), "inf": float("inf")}),  # free values: `tap` writes null
]


@pytest.mark.parametrize(("kind", "name", "value"), IN_RANGE, ids=lambda x: str(x)[:20])
def test_decode_accepts_the_edges_of_each_range(kind: str, name: str, value: Any) -> None:
    msg = decode(_frames(kind, **{name: value}))
    assert getattr(msg, name) == value or name in ("stamps", "detail")


def test_a_played_ack_past_sqlite_integer_range_is_a_bad_message_not_an_overflow() -> None:
    # Today's crash: this ack reached ingest's journal and SQLite raised OverflowError there.
    frames = encode(
        Played(stream="s", seq=0, samples=1, rate_hz=24000, first_sample_wall_ns=1, last_sample_wall_ns=2)
    )
    header = msgpack.unpackb(frames[0])
    header["seq"] = 2**64 - 1
    with pytest.raises(BadMessage, match="field 'seq'"):
        decode([msgpack.packb(header)])


def test_every_field_of_every_type_has_a_bound() -> None:
    from bus.wire import DICT, FLOAT, MAX_INT, PLAIN, schema

    for cls in message_types().values():
        for f in schema(cls):
            if f.kind in (PLAIN, FLOAT) and f.types[0] is not bool:
                assert f.limit is not None, (cls.TYPE, f.name)
                lo, hi = f.limit
                assert -1 <= lo <= hi, (cls.TYPE, f.name)
                assert hi <= (MAX_INT if f.types[0] is int else 1e18), (cls.TYPE, f.name)  # SQLite's INTEGER
            if f.kind == DICT:
                assert f.limit is not None, (cls.TYPE, f.name)


def _typed(f: Any) -> st.SearchStrategy[Any]:
    """Any value of the field's declared wire type, in range or (often) not."""
    from bus.wire import DICT, FLOAT, PAYLOAD, STAMPS

    edges = st.sampled_from([-2, -1, 0, 1, 7999, 8000, 24000, 192_000, 2**53 - 1, 2**53, 2**63 - 1, 2**63])
    ints = st.integers(-(2**63), 2**64 - 1) | st.integers(0, 100) | edges
    if f.kind == PAYLOAD:
        return st.binary(max_size=64)
    if f.kind == STAMPS:
        stamp = st.tuples(st.text(max_size=70), ints, ints, ints, ints).map(list)
        return st.lists(stamp, max_size=40)
    if f.kind == FLOAT:
        return st.floats() | ints
    if f.kind == DICT:
        return st.dictionaries(st.text(max_size=8), _values, max_size=6)
    t = f.types[0]
    if t is bool:
        return st.booleans()
    if t is int:
        return ints
    if t is str:
        long = st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.integers(0, 20_000))
        return st.text(max_size=40) | long
    return st.binary(max_size=40)


@st.composite
def _typed_frames(draw: st.DrawFn) -> list[bytes]:
    from bus.wire import PAYLOAD, schema

    cls = draw(st.sampled_from(sorted(message_types().values(), key=lambda c: c.TYPE)))
    header: dict[str, Any] = {"v": 1, "type": cls.TYPE}
    payload = None
    for f in schema(cls):
        if not f.required and draw(st.booleans()):
            continue  # left out: the default
        value = draw(_typed(f))
        if f.kind == PAYLOAD:
            payload = value
        else:
            header[f.name] = value
    return [msgpack.packb(header)] + ([payload] if payload is not None else [])


@settings(max_examples=800, deadline=None)
@given(_typed_frames())
def test_well_typed_values_decode_within_bounds_or_raise_bad_message(frames: list[bytes]) -> None:
    """Every field has its declared type here; only its value is random. Decoding either gives a
    message whose every value lies within its field's bounds, or BadMessage; never anything else."""
    from bus.wire import schema

    try:
        msg = decode(frames)
    except BadMessage:
        return
    for f in schema(type(msg)):
        value = getattr(msg, f.name)
        if f.limit is not None and type(value) in (int, float):
            assert f.limit[0] <= value <= f.limit[1], (msg.TYPE, f.name, value)
        elif f.limit is not None and type(value) is str:
            assert len(value) <= f.limit[1], (msg.TYPE, f.name, len(value))
    again = encode(msg)
    assert encode(decode(again)) == again


# ---- text that is not valid Unicode is repaired at encode (issue #23) ------------------------------
def test_lone_surrogates_are_replaced_at_encode_and_pairs_joined() -> None:
    # What `say` gets from argv/stdin under surrogateescape, or a Python producer from a bad decode:
    # msgpack cannot encode it, and the producer died with a traceback.
    msg = TextIn(stream="s\udcff", text="caf\udce9 \ud800 ok \ud83d\ude80.", source="say")
    got = decode(encode(msg))
    assert got == TextIn(stream="s\ufffd", text="caf\ufffd \ufffd ok \U0001f680.", source="say")


def test_every_str_of_a_message_is_repaired_at_encode_detail_and_stamps_too() -> None:
    ev = TapEvent(
        node="n",
        kind="error",
        detail={"path": "/tmp/\udcff", "nested": {"k\ud800": ["\udc80"]}},
        stamps=(Stamp("st\udcff", 1, 2, 3, 4),),
    )
    got = decode(encode(ev, (Stamp("x\ud800", 5, 6, 7, 8),)))
    assert isinstance(got, TapEvent)
    assert got.detail == {"path": "/tmp/\ufffd", "nested": {"k\ufffd": ["\ufffd"]}}
    assert [s.stage for s in got.stamps] == ["st\ufffd", "x\ufffd"]
    assert decode(encode(SAMPLES[0])) == SAMPLES[0]  # valid text goes through untouched
