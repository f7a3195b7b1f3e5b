"""`stream-tts eval translate` end to end on the tiny GGUFs (the numbers are noise, the path is the
real one), its shipped data, and what it calls a bad output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nodes.ingest.text.speakable import SentenceStream
from nodes.translate.llama.tiny import write_tiny_qwen2_gguf, write_tiny_qwen3_gguf
from stream_tts.eval.translate import (
    SETS,
    _raw_extras,
    is_mostly_japanese,
    load_set,
    voice_extras,
)
from tests.conftest import REPO


def eval_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", "eval", "translate", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "config.toml"
    path.write_text("[translate]\nn_threads = 1\nn_ctx = 2048\nmax_tokens = 40\n", encoding="utf-8")
    return path


def test_the_shipped_sets_are_whole_and_their_must_survive_tokens_reach_the_translator() -> None:
    wmt, coding = load_set("wmt24pp"), load_set("coding")
    assert len(wmt) == 100 and len(coding) >= 60
    for rows in (wmt, coding):
        assert len({r.id for r in rows}) == len(rows)
        assert all(r.source.strip() and r.reference.strip() and "\n" not in r.source for r in rows)
    assert {r.domain for r in wmt} == {"news", "social", "literary", "speech"}
    assert not any("CANARY" in r.source for r in wmt)  # the canary and is_bad_source rows are left out
    assert sum(len(r.keep) for r in coding) >= 60
    for r in coding:  # a token ingest would rewrite could never be kept: the data would lie
        stream = SentenceStream(idle_flush_s=None)
        said = " ".join(stream.feed(r.source) + stream.flush())
        assert all(k in said and k in r.reference for k in r.keep), (r.id, said, r.keep)
    notice = (Path(SETS["wmt24pp"]).parent, REPO / "stream_tts/eval/data/README.md")
    assert "Apache License" in notice[1].read_text(encoding="utf-8")
    assert (REPO / "stream_tts/eval/data/LICENSE-Apache-2.0.txt").is_file()


def test_eval_runs_two_tiers_side_by_side_on_tiny_models(tmp_path: Path, config: Path) -> None:
    qwen2 = write_tiny_qwen2_gguf(tmp_path / "tiny-qwen2.gguf")
    moe = write_tiny_qwen3_gguf(tmp_path / "tiny-qwen3moe.gguf", moe=True)
    out = tmp_path / "eval.json"
    r = eval_cli(
        "--translator", str(qwen2), "--translator", str(moe), "--limit", "4", "--config", str(config),
        "--json", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    for needle in (
        "chrF",
        "tokens kept",
        "bad outputs",
        "ms / sentence",
        "tiny-qwen2.gguf",
        "tiny-qwen3moe.gguf",
    ):
        assert needle in r.stdout, (needle, r.stdout)
    assert "COMET: not measured" in r.stdout
    assert r.stderr.count("8/8") == 2  # a progress bar per translator: 4 rows of each set
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["version"] == 1 and report["sets"] == {
        "wmt24pp": {"file": "wmt24pp_en-ja.jsonl", "rows": 4},
        "coding": {"file": "coding_en-ja.jsonl", "rows": 4},
    }
    assert [t["translator"] for t in report["tiers"]] == ["tiny-qwen2.gguf", "tiny-qwen3moe.gguf"]
    assert report["tiers"][1]["engine"]["model_name"] == "tiny-qwen3moe-random"
    for tier in report["tiers"]:
        for name in ("wmt24pp", "coding"):
            s = tier["sets"][name]
            assert s["rows"] == 4 and s["sentences"] >= 4
            assert 0 <= s["chrf"] <= 100 and 0 <= s["bad"] <= 1 and s["ms_per_sentence"] > 0
            outputs = tier["outputs"][name]
            assert len(outputs) == 4 and all(o["text"] and len(o["ms"]) == o["sentences"] for o in outputs)
        assert tier["sets"]["wmt24pp"]["kept"] is None and 0 <= tier["sets"]["coding"]["kept"] <= 1
        # placeholders put back what the tiny model cannot say: file names and numbers survive
        assert tier["sets"]["coding"]["kept"] > 0.5


def test_eval_says_what_is_wrong_instead_of_failing_obscurely(tmp_path: Path, config: Path) -> None:
    r = eval_cli("--translator", "13b", "--config", str(config))
    assert r.returncode == 2 and "not a manifest size" in r.stderr
    r = eval_cli("--translator", str(tmp_path / "none.gguf"), "--config", str(config))
    assert r.returncode == 2 and "is not there" in r.stderr
    try:
        import comet  # noqa: F401
    except ImportError:
        r = eval_cli("--translator", str(tmp_path / "none.gguf"), "--comet", "--config", str(config))
        assert r.returncode == 2 and "unbabel-comet" in r.stderr


def test_what_counts_as_a_bad_output() -> None:
    assert is_mostly_japanese("テストが通りました。")
    assert is_mostly_japanese("`parse_config` のバグを修正しました。", ["parse_config"])
    assert not is_mostly_japanese("The tests pass now.")
    assert not is_mostly_japanese("")
    assert voice_extras("テストが通りました。注：直訳です。", "The tests pass.") != []
    assert voice_extras("テストが通りました。This is the translation of it.", "The tests pass.") != []
    assert voice_extras("npm run lint を実行します。", "Run npm run lint.") == []  # copied from the source
    assert _raw_extras("テストが通りました。\nNote: polite form.", "The tests pass.")
    assert _raw_extras("「テストが通りました。」", "The tests pass.")
    assert not _raw_extras("テストが通りました。", "The tests pass.")
