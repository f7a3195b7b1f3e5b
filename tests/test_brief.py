"""Brief mode through the whole pipeline on the tiny models (real supervisord): a long answer is
said as one summary made by the translation model from the turn's English, a short one in full;
`stream-tts mode brief --stream S` switches one stream at run time; a summary that is not ready in
time gives way to the turn's first sentences. One summary per turn, journaled like a sentence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bus.client import Publisher
from bus.config import load_config
from bus.journal import Journal
from bus.tap import events, subscribe
from tests.conftest import stream_tts, wait_for, write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

LONG = (
    "I fixed the failing test in tests/test_api.py. The bug was an off-by-one in the pager. "
    "I also bumped the version to 2.3.1. All 214 tests pass now. Next I will update the docs."
)
SHORT = "Done. It works."


def played(data: Path, stream: str) -> list[dict[str, Any]]:
    path = data / "played.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r["stream"] == stream]


def test_a_long_answer_is_said_as_one_summary_a_short_one_in_full_and_a_slow_summary_gives_way(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "tiny-models").symlink_to(tiny_models[0].parent)
    cfg = write_config(
        tmp_path / "config.toml",
        data,
        ingest={"brief_min_chars": 60},  # mode: full by default; switched per stream below
        translate={"max_tokens": 12},
        synthesize={"min_token_text_ratio": 0.5, "max_token_text_ratio": 2.0},
    )
    where = ("--config", str(cfg), "--data-dir", str(data))
    assert stream_tts("up", "--tiny", "--quiet", *where).returncode == 0
    config = load_config(cfg, environ={})
    tap = subscribe(config)
    seen: list[Any] = []
    try:
        assert stream_tts("mode", "brief", "--stream", "b", "--config", str(cfg)).returncode == 0
        assert wait_for(lambda: Journal(data / "journal.sqlite3").modes() == {"b": "brief"}, 10)
        with Publisher(config, wait_s=10) as pub:
            pub.send("b", LONG, source="test")  # one message: one turn (final)
            pub.send("b", SHORT, source="test")  # a short answer: said in full
            pub.send("f", LONG, source="test")  # stream f stays in full mode
        assert wait_for(lambda: len(played(data, "b")) >= 3 and len(played(data, "f")) >= 5, 120)
        seen += [ev for ev in events(tap, 1.0)]
    finally:
        stream_tts("down", *where, timeout=60)
    b, f = played(data, "b"), played(data, "f")
    assert [r["seq"] for r in b] == [0, 1, 2] and [r["seq"] for r in f] == list(range(5))
    summary = b[0]
    assert summary["text_en"].split("\n")[0].startswith("I fixed the failing test") and summary["text_ja"]
    assert [r["text_en"] for r in b[1:]] == ["Done.", "It works."]
    rows = Journal(data / "journal.sqlite3").open_entries()
    assert rows == []  # everything played
    for stream, n in (("b", 3), ("f", 5)):
        assert len([r for r in played(data, stream)]) == n  # one summary per turn, never two


def test_a_summary_not_ready_in_time_gives_way_to_the_first_sentences(
    tmp_path: Path, tiny_models: tuple[Path, Path]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "tiny-models").symlink_to(tiny_models[0].parent)
    cfg = write_config(
        tmp_path / "config.toml",
        data,
        ingest={"mode": "brief", "brief_min_chars": 60},
        translate={"max_tokens": 12, "summary_wait_ms": 0},  # no summary is ever in time
        synthesize={"min_token_text_ratio": 0.5, "max_token_text_ratio": 2.0},
    )
    where = ("--config", str(cfg), "--data-dir", str(data))
    assert stream_tts("up", "--tiny", "--quiet", *where).returncode == 0
    config = load_config(cfg, environ={})
    tap = subscribe(config)
    try:
        with Publisher(config, wait_s=10) as pub:
            pub.send("s", LONG, source="test")
        done = None
        for ev in events(tap, 90):
            if ev.node == "translate" and ev.kind == "finished" and ev.stream == "s":
                done = ev
                break
        assert wait_for(lambda: len(played(data, "s")) == 1, 60)
    finally:
        stream_tts("down", *where, timeout=60)
    assert done is not None and done.detail["summary"] and done.detail["summary_fallback"], done
    assert "no summary within 0 ms" in done.detail["fallback_reason"]
    assert played(data, "s")[0]["text_ja"]  # the first sentences, said instead
