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
    Pause,
    Played,
    Resume,
    Sentence,
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
    TextIn(stream="s1", text="Hello there. How are you?", final=False, source="say"),
    Sentence(stream="s1", seq=7, text="Hello there.", attempt=1, stamps=(STAMP,)),
    Clause(stream="s1", seq=7, index=0, text="こんにちは、", last=False, text_en="Hello there."),
    AudioChunk(stream="s1", seq=7, index=2, last=True, rate_hz=24000, pcm=PCM, text_ja="こんにちは"),
    Played(stream="s1", seq=7, samples=480, rate_hz=24000, first_sample_wall_ns=1, last_sample_wall_ns=2),
    Failed(stream="s1", seq=7, stage="translate", reason="model not loaded"),
    Cancel(stream="s1", reason="new turn"),
    Flush(stream=""),
    Pause(),
    Resume(),
    Volume(level=0.5),
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
