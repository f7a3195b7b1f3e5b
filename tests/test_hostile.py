"""No input crashes a node: a running pipeline (real supervisord, tiny models) takes a storm of
well-formed but hostile messages on every input socket it binds (text, acks, translate,
synthesize, playback): out-of-range ids and indices, acks for sentences nobody sent, chunks that
contradict each other, odd rates and formats, every message type on every socket. Every program
keeps running under the same pid, and a sentence said before the storm and one said after it each
play once."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.chaos import _supervisor
from bus import topology
from bus.client import Publisher
from bus.config import Config, load_config
from bus.messages import Message, Resume, Stamp, message_types
from tests.conftest import stream_tts, wait_for, write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

STREAMS = ["noise-a", "noise/b", "noise_b", "ノイズ", "n" * 300, ""]
SOCKETS = ("text", "acks", "translate", "synthesize", "playback")
NATURAL = {
    "text": ("text", "cancel", "flush", "pause", "resume", "volume"),
    "acks": ("played", "failed"),
    "translate": ("sentence",),
    "synthesize": ("clause",),
    "playback": ("audio",),
}
INTS = st.one_of(
    st.sampled_from([-1, 0, 1, 2, 5, 2**31, 2**53, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]),
    st.integers(-(2**66), 2**66),
    st.integers(0, 40),
)
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, 2.0, 1e300]))
TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["", "。", "\u3000", "a" * 2000, "\ud800x"]))


def value_for(field: dataclasses.Field[Any]) -> st.SearchStrategy[Any]:
    kind = str(field.type)
    if field.name == "stream":
        return st.sampled_from(STREAMS)
    if field.name == "stamps":
        return st.just(())
    if kind == "int":
        return INTS
    if kind == "float":
        return FLOATS
    if kind == "bool":
        return st.booleans()
    if kind == "bytes":
        return st.binary(max_size=2000)
    if kind == "str":
        if field.name == "sample_format":
            return st.sampled_from(["f32le", "s16le", "u8", ""])
        if field.name == "kind":
            return st.sampled_from(["ready", "accepted", "refused", "started", "first_chunk", "bogus"])
        return TEXT
    if kind.startswith("dict"):
        return st.dictionaries(st.text(max_size=5), st.integers(), max_size=4)
    return st.just(field.default if field.default is not dataclasses.MISSING else None)


@st.composite
def hostile(draw: st.DrawFn, socket: str) -> list[bytes]:
    types = message_types()
    name = draw(
        st.sampled_from(NATURAL[socket]) if draw(st.integers(0, 4)) else st.sampled_from(sorted(types))
    )
    cls = types[name]
    values = {f.name: draw(value_for(f)) for f in dataclasses.fields(cls) if f.name not in ("TYPE",)}
    try:
        msg: Message = cls(**values)
        return msg.to_frames((Stamp("ingest", 1, 1, 1, 1),))
    except Exception:  # a value the encoder will not write: the wire's own check; send it raw
        import msgpack

        header = {
            "v": cls.VERSION,
            "type": name,
            **{k: v for k, v in values.items() if not isinstance(v, bytes)},
        }
        try:
            return [msgpack.packb(header, use_bin_type=True)]
        except Exception:
            return [msgpack.packb({"v": 1, "type": name}, use_bin_type=True)]


def played(data: Path, stream: str) -> list[int]:
    path = data / "played.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [r["seq"] for r in map(json.loads, lines) if r["stream"] == stream]


def pids(config: Config) -> dict[str, int]:
    rpc = _supervisor(config.data_dir)
    return {p["name"]: p["pid"] for p in rpc.supervisor.getAllProcessInfo() if p["statename"] == "RUNNING"}


def test_a_storm_of_hostile_messages_on_every_input_crashes_nothing_and_loses_nothing(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "tiny-models").symlink_to(tiny_models[0].parent)
    cfg = write_config(
        tmp_path / "config.toml",
        data,
        translate={"max_tokens": 4},
        synthesize={"min_token_text_ratio": 0.5, "max_token_text_ratio": 2.0, "deadline_s": 10.0},
    )
    where = ("--config", str(cfg), "--data-dir", str(data))
    up = stream_tts("up", "--tiny", "--quiet", *where)
    assert up.returncode == 0, up.stderr
    config = load_config(cfg, environ={})
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    try:
        with Publisher(config, wait_s=10) as pub:
            pub.send("hostile-check", "Before the storm.", source="test")
        assert wait_for(lambda: played(data, "hostile-check") == [0], 60)
        before = pids(config)
        assert set(before) == {p.name for p in topology.PROGRAMS}
        socks = {name: config.endpoints.connect_socket(ctx, name) for name in SOCKETS[1:]}
        text = Publisher(config, wait_s=10)
        text.open()
        assert text._sock is not None
        sent = {"n": 0}

        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(
            st.lists(
                st.sampled_from(SOCKETS).flatmap(lambda s: st.tuples(st.just(s), hostile(s))), max_size=12
            )
        )
        def storm(batch: list[tuple[str, list[bytes]]]) -> None:
            for socket, frames in batch:
                sock = text._sock if socket == "text" else socks[socket]
                assert sock is not None
                sock.send_multipart(frames, flags=zmq.NOBLOCK)
                sent["n"] += 1
            now = pids(config)
            assert now == before, f"a program restarted: {before} -> {now}"

        storm()
        text.send_message(Resume())  # a hostile pause would hold the next sentence
        text.close()
        for s in socks.values():
            s.close(linger=0)
        assert sent["n"] > 100
        assert wait_for(lambda: pids(config) == before, 5)
        with Publisher(config, wait_s=10) as pub:
            pub.send("hostile-check", "After the storm.", source="test")
        assert wait_for(lambda: played(data, "hostile-check") == [0, 1], 120), played(data, "hostile-check")
        assert pids(config) == before  # nobody died late either
    finally:
        stream_tts("down", *where, timeout=60)
