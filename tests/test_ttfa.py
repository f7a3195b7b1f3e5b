"""`stream-tts bench` against a tiny pipeline under supervisord: every stage timed from the stamps,
TTFA at least the sum of its parts (the bus hops between them are the rest); `--stages` composes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import stream_tts, write_config

_cli = stream_tts


@pytest.mark.slow
def test_bench_times_every_stage_of_a_tiny_pipeline(tmp_path: Path, tiny_models: tuple[Path, Path]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "tiny-models").symlink_to(tiny_models[0].parent)
    cfg = write_config(
        tmp_path / "config.toml",
        data,
        translate={"max_tokens": 4},
        synthesize={"first_hop_tokens": 15, "hop_tokens": 25, "threads": 1},
        playback={"sink": "wav"},
    )
    out = tmp_path / "ttfa.json"
    res = _cli(
        "bench", "--up", "--config", str(cfg), "--data-dir", str(data), "--sentences", "3", "--json", str(out)
    )
    assert res.returncode == 0, res.stderr + res.stdout
    assert "TTFA" in res.stdout
    d = json.loads(out.read_text(encoding="utf-8"))
    assert len(d["sentences"]) == 3
    for stage in ("ingest", "translate", "synthesize", "playback", "ttfa"):
        assert d["stages"][stage]["n"] == 3 and d["stages"][stage]["p50_ms"] > 0, stage
    for row in d["sentences"]:
        parts = row["ingest"] + row["translate"] + row["synthesize"] + row["playback"]
        assert row["ttfa"] >= parts - 1.0, row  # 1 ms: the two clocks' rounding (mono vs wall)
        assert row["ttfa"] < 120_000
        assert row["underruns"] == 0 and row["later_chunk_lead_ms"] is None  # WAV files: no device
    assert d["gapless"] == {"underruns": 0, "sentences": 3}


def test_stages_mode_composes_the_recorded_files(tmp_path: Path) -> None:
    out = tmp_path / "composed.json"
    res = _cli("bench", "--stages", "--json", str(out), timeout=60)
    assert res.returncode == 0, res.stderr
    d = json.loads(out.read_text(encoding="utf-8"))
    parts = sum(d["stages"][s]["p50_ms"] for s in ("ingest", "translate", "synthesize", "playback"))
    assert d["ttfa"]["ttfa_p50_ms"] == pytest.approx(parts, abs=0.01)
    assert d["ttfa"]["largest_ratio_stage"] in ("translate", "synthesize", "playback")


def test_gapless_reports_the_tightest_later_chunk_and_the_underruns() -> None:
    from bench.ttfa import gapless

    rows: list[dict[str, Any]] = [
        {"later_chunk_lead_ms": 140.0, "underruns": 0},
        {"later_chunk_lead_ms": 61.5, "underruns": 2},
        {"later_chunk_lead_ms": None, "underruns": 0},  # one chunk only
        {"later_chunk_lead_ms": 90.0, "underruns": 0},
    ]
    assert gapless(rows) == {
        "underruns": 2,
        "sentences": 4,
        "later_chunk_lead_ms_p50": 90.0,
        "later_chunk_lead_ms_min": 61.5,
    }
