"""Endpoints and config: private ipc sockets by default, TOML moves, environment overrides, clear
errors. (What the private folder keeps out: tests/test_private.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq

from bus.config import ConfigError, load_config
from bus.endpoints import (
    BASE_PORT,
    LAYOUT,
    EndpointError,
    Endpoints,
    bus_dir,
    default_endpoints,
    tcp_endpoints,
)


def test_by_default_every_endpoint_is_an_ipc_socket_in_the_data_dirs_private_folder(tmp_path: Path) -> None:
    c = load_config(environ={"STREAM_TTS_DATA_DIR": str(tmp_path / "data")})
    folder = (tmp_path / "data").resolve() / "run" / "bus"
    assert c.endpoints.folder == folder == bus_dir(c.data_dir)
    assert c.endpoints.connect == default_endpoints(folder)
    assert c.endpoints.connect["text"] == f"ipc://{folder}/text.sock"
    assert c.endpoints.connect["tap_out"] == f"ipc://{folder}/tap_out.sock"
    assert c.endpoints.bind == c.endpoints.connect
    assert len(set(c.endpoints.connect.values())) == len(LAYOUT)
    # The same data dir spelled another way is the same pipeline: the same addresses.
    again = load_config(environ={"STREAM_TTS_DATA_DIR": str(tmp_path / "x" / ".." / "data")})
    assert again.endpoints.connect == c.endpoints.connect
    assert tcp_endpoints()["text"] == f"tcp://127.0.0.1:{BASE_PORT}"  # the block, when moved to TCP


def test_toml_moves_a_socket_and_env_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[endpoints]\ntranslate = "tcp://10.0.0.2:6001"\n[bind]\ntranslate = "tcp://*:6001"\n')
    c = load_config(cfg, environ={})
    assert c.endpoints.connect["translate"] == "tcp://10.0.0.2:6001"
    assert c.endpoints.bind["translate"] == "tcp://*:6001"
    assert c.endpoints.connect["synthesize"] == default_endpoints(bus_dir(c.data_dir))["synthesize"]
    c = load_config(cfg, environ={"STREAM_TTS_ENDPOINT_TRANSLATE": "tcp://127.0.0.1:7001"})
    assert c.endpoints.connect["translate"] == "tcp://127.0.0.1:7001"


def test_config_from_environment_variable_and_relative_paths(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('data_dir = "state"\n[translate]\nmodel = "m/x.gguf"\n')
    c = load_config(environ={"STREAM_TTS_CONFIG": str(cfg)})
    assert c.path == cfg.resolve()
    assert c.data_dir == (tmp_path / "state").resolve()
    assert c.path_setting("translate", "model", "unused") == tmp_path / "m/x.gguf"
    c = load_config(cfg, environ={"STREAM_TTS_DATA_DIR": str(tmp_path / "elsewhere")})
    assert c.data_dir == (tmp_path / "elsewhere").resolve()


@pytest.mark.parametrize(
    "text, match",
    [
        ("[endpoints]\nnope = 'tcp://127.0.0.1:1'\n", "unknown endpoint 'nope'"),
        ("[endpoints]\ntranslate = '127.0.0.1:1'\n", "not an address"),
        ("[endpoints]\ntranslate = 'udp://127.0.0.1:1'\n", "transport 'udp'"),
        ("[endpoints]\ntranslate = 5\n", "not an address"),
    ],
)
def test_bad_endpoints_are_refused_with_the_reason(tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(EndpointError, match=match):
        load_config(cfg, environ={})


def test_bad_config_files_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("data_dir = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, environ={})
    bad.write_text("translate = 3\n")
    with pytest.raises(ConfigError, match=r"\[translate\] must be a table"):
        load_config(bad, environ={})


def test_sockets_get_bounded_queues_and_size_limits(tmp_path: Path) -> None:
    ep = Endpoints.load({"playback": "tcp://127.0.0.1:0"}, environ={}, folder=tmp_path / "bus")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ep.bind_socket(ctx, "playback")
    try:
        assert sock.getsockopt(zmq.RCVHWM) == 1000
        assert sock.getsockopt(zmq.LINGER) == 1000
        assert sock.getsockopt(zmq.MAXMSGSIZE) == 17 * 1024 * 1024
        assert sock.getsockopt(zmq.TCP_KEEPALIVE) == 1
    finally:
        sock.close(0)


def test_an_unknown_ingest_key_is_refused_naming_the_known_ones() -> None:
    import pytest

    from nodes.ingest.settings import IngestSettings

    with pytest.raises(ValueError, match=r"unknown key\(s\) idle_flush;.*idle_flush_s"):
        IngestSettings.from_section({"idle_flush": 1.0})
    ok = IngestSettings.from_section({"idle_flush_s": 1.0, "urls": "keep", "max_attempts": 2})
    assert ok.max_attempts == 2


def test_every_section_refuses_an_unknown_key_the_same_way() -> None:
    import pytest

    from bus.errors import EngineError
    from nodes.playback.settings import PlaybackSettings
    from nodes.synthesize.settings import SynthSettings

    with pytest.raises(EngineError, match=r"\[playback\] unknown key\(s\) jitter; known: .*jitter_ms"):
        PlaybackSettings.from_section({"jitter": 1})
    with pytest.raises(EngineError, match=r"\[synthesize\] unknown key\(s\) hop; known: .*hop_tokens"):
        SynthSettings.from_section({"hop": 1})
