"""Clause splitting, output cleaning and placeholder protection, on hand-written model outputs
(tests/data/translate/recorded_outputs.json: written by hand in the shape of Qwen-style models'
known failure modes, not recorded from a real model; see its README.md) and on generated text."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.translate.ja_text import (
    ClauseSplitter,
    ClauseStream,
    OutClause,
    ThinkFilter,
    clean_clause,
    is_japanese,
)
from nodes.translate.placeholders import placeholder, protect, restore

RECORDED = json.loads((Path(__file__).parent / "data/translate/recorded_outputs.json").read_text("utf-8"))


def run_stream(en: str, raw: str, chunk: int, min_chars: int = 8) -> tuple[list[OutClause], ClauseStream]:
    p = protect(en)
    cs = ClauseStream(p.originals, min_chars)
    out: list[OutClause] = []
    for i in range(0, len(raw), chunk):
        out += cs.feed(raw[i : i + chunk])
        if cs.done:
            break
    out += cs.finish()
    return out, cs


# ---- clause splitting -------------------------------------------------------------------------
def test_splits_at_terminators_always_and_at_commas_once_long_enough() -> None:
    s = ClauseSplitter(min_clause_chars=8)
    text = "まず、依存関係をインストールし、次に実行します。完了！本当？"
    clauses = [*s.feed(text), s.flush()]
    assert clauses == ["まず、依存関係をインストールし、", "次に実行します。", "完了！", "本当？"]


def test_closing_quotes_and_repeated_marks_stay_with_their_clause() -> None:
    s = ClauseSplitter()
    clauses = [*s.feed("「保存しました。」次は？！（はい）。終わり"), s.flush()]
    assert clauses == ["「保存しました。」", "次は？！", "（はい）。", "終わり"]


def test_no_break_inside_brackets_unless_they_never_close() -> None:
    s = ClauseSplitter(min_clause_chars=1)
    assert s.feed("設定（注、これは例です）を見て") == []
    assert s.flush() == "設定（注、これは例です）を見て"
    s.feed("（" + "あ" * 200 + "。いい")
    assert s.pending.endswith("いい") and len(s.pending) < 200  # an unclosed bracket stops shielding


def test_a_sentence_end_waits_for_the_next_character_a_comma_does_not() -> None:
    s = ClauseSplitter()
    assert s.feed("終わりました。") == []  # a closing 」 could still follow
    assert s.feed("次") == ["終わりました。"]
    assert s.flush() == "次"
    # nothing closes after 、 outside brackets: the first clause leaves with its 、, one decoded
    # token earlier (on the GPU 7B, ~4.7 ms of time to first audio)
    assert s.feed("テスト結果を確認、") == ["テスト結果を確認、"]
    assert s.pending == ""


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from(list("あいうえお漢字、。！？」（）\n ab⟦0⟧")), max_size=80),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=10),
    min_chars=st.integers(min_value=0, max_value=12),
)
def test_splitting_never_loses_or_repeats_text_and_ignores_chunking(
    text: str, cuts: list[int], min_chars: int
) -> None:
    whole = ClauseSplitter(min_chars)
    expected = [*whole.feed(text), whole.flush()]
    s = ClauseSplitter(min_chars)
    got: list[str] = []
    bounds = sorted({0, len(text), *[c for c in cuts if c <= len(text)]})
    for a, b in itertools.pairwise(bounds):
        got += s.feed(text[a:b])
    got.append(s.flush())
    assert "".join(got) == text
    assert got == expected


# ---- the stream on recorded outputs --------------------------------------------------------------
@pytest.mark.parametrize("case", RECORDED, ids=[c["name"] for c in RECORDED])
@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_recorded_model_outputs_become_the_expected_clauses(case: dict[str, Any], chunk: int) -> None:
    out, cs = run_stream(case["en"], case["raw"], chunk)
    assert [[c.text, c.last] for c in out] == case["clauses"]
    assert cs.japanese_seen == bool(case["clauses"])


def test_nothing_is_released_before_the_first_japanese() -> None:
    p = protect("Open setup.py.")
    cs = ClauseStream(p.originals, min_clause_chars=1)
    assert cs.feed(placeholder(0) + "。") == []
    assert cs.feed("開きます。") == []  # ⟦0⟧。 is complete and kept, but held: no Japanese yet
    released = cs.feed("次")  # 開きます。 is complete: both go, in order
    assert [(c.text, c.last) for c in released] == [("setup.py。", False), ("開きます。", False)]
    assert [(c.text, c.last) for c in cs.finish()] == [("次", True)]


def test_a_newline_after_japanese_ends_the_translation() -> None:
    cs = ClauseStream()
    assert cs.feed("はい、わかりました。") == []
    cs.feed("\nHai, wakarimashita.")
    assert cs.done
    assert cs.feed("もっと。") == []  # whatever the model says next is not spoken
    assert [(c.text, c.last) for c in cs.finish()] == [("はい、わかりました。", True)]


def test_an_answer_without_japanese_releases_nothing_and_says_what_was_dropped() -> None:
    out, cs = run_stream("Hello.", "Hello! How can I help you today?", chunk=4)
    assert out == [] and not cs.japanese_seen
    assert "".join(cs.dropped).startswith("Hello!")


# ---- cleaning ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("「テストです。」", "テストです。"),
        ("翻訳: テストです。", "テストです。"),
        ("Japanese translation: テストです。", "テストです。"),
        ("テストです（test desu）。", "テストです。"),
        ("設定ファイル（⟦0⟧）を開きます。", "設定ファイル⟦0⟧を開きます。"),
        ("Tesuto desu.", ""),
        ("This is a note about the translation.", ""),
        ("。", ""),
        ("⟦0⟧。", "⟦0⟧。"),
        ("**重要**な変更です。", "重要な変更です。"),
        ("ReactとPythonを使います。", "ReactとPythonを使います。"),
        ("文字化け\ufffdです。", "文字化けです。"),
    ],
)
def test_clean_clause(raw: str, clean: str) -> None:
    assert clean_clause(raw, line_start=True) == clean


def test_labels_are_only_stripped_at_the_start_of_a_line() -> None:
    assert clean_clause("日本語: テストです。", line_start=True) == "テストです。"
    assert clean_clause("日本語: テストです。", line_start=False) == "日本語: テストです。"


def test_is_japanese() -> None:
    assert is_japanese("テスト") and is_japanese("漢字") and is_japanese("ひらがな")
    assert not is_japanese("romaji desu") and not is_japanese("⟦0⟧。")


# ---- placeholders -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "protected"),
    [
        ("I fixed setup.py and src/app.ts.", ["setup.py", "src/app.ts"]),
        ("See https://example.com/a?b=1, then retry.", ["https://example.com/a?b=1"]),
        ("Call os.path.join() with --verbose.", ["os.path.join()", "--verbose"]),
        ("The TranslateNode reads my_var and camelCase.", ["TranslateNode", "my_var", "camelCase"]),
        ("Bump to v0.3.36 (commit 8699edb), 80% done, 1,000 left.", ["v0.3.36", "8699edb", "80%", "1,000"]),
        ("Run `make test` in ./scripts/ci.sh now.", ["make test", "./scripts/ci.sh"]),
        ("Update the file(s), e.g. at 9 a.m., and/or later.", ["9"]),
        ("Nothing technical here.", []),
    ],
)
def test_protect_finds_code_paths_urls_versions_and_numbers(text: str, protected: list[str]) -> None:
    p = protect(text)
    assert list(p.originals) == protected
    assert all(o not in p.text for o in protected)
    assert p.text.count("⟦") == len(protected)


def test_restore_puts_back_exactly_what_was_protected() -> None:
    text = "Renamed old_name to new_name in src/x.py at 12:30 (v1.2.3)."
    p = protect(text)
    assert restore(p.text, p.originals).text == text


def test_restore_handles_reordering_look_alikes_duplicates_and_loss() -> None:
    originals = ("a.py", "b_c", "42")
    r = restore("【1】と⟦ 0 ⟧、[[1]]と⟦7⟧", originals)
    assert r.text == "b_cとa.py、b_cと⟦7⟧"  # ⟦7⟧ is not ours: left as written
    assert r.missing == ["42"] and r.duplicates == 1


def test_a_sentence_of_only_code_needs_no_translation() -> None:
    assert not protect("`make test`").needs_translation
    assert not protect("v0.3.36.").needs_translation
    assert protect("Run `make test`.").needs_translation


# ---- a clause is never longer than the bus carries (issue #23) -----------------------------------
MAX_CLAUSE = 500  # bus/messages.py MAX_CLAUSE_CHARS: a longer Clause is refused at decode


@pytest.mark.parametrize("chunk", [1, 7, 20_000])
def test_a_clause_with_no_break_is_cut_at_the_clause_limit_losing_nothing(chunk: int) -> None:
    """20,000 characters with no punctuation were one clause (synthesize then worked on it until
    its deadline, the stream waiting behind it). Now it leaves in pieces as it is decoded."""
    raw = "あいうえおかきくけこ" * 2000
    out, _ = run_stream("Say it all.", raw, chunk)
    assert max(len(c.text) for c in out) <= MAX_CLAUSE
    assert "".join(c.text for c in out) == raw
    assert [c.last for c in out] == [False] * (len(out) - 1) + [True]
    splitter = ClauseSplitter()
    first = splitter.feed(raw[:1200])
    assert [len(c) for c in first] == [MAX_CLAUSE, MAX_CLAUSE]  # streamed, not held to the end


def test_restored_placeholders_do_not_make_a_clause_too_long() -> None:
    en = "Open " + " and ".join(f"`{'x' * 30}{i}`" for i in range(40)) + "."
    p = protect(en)
    raw = "、".join(placeholder(i) for i in range(len(p.originals))) + "を開きます。"  # one long clause
    cs = ClauseStream(p.originals, 10_000)  # 、 never ends it
    out = cs.feed(raw) + cs.finish()
    assert max(len(c.text) for c in out) <= MAX_CLAUSE
    assert "".join(c.text for c in out) == "、".join(p.originals) + "を開きます。"


# ---- thinking: a reasoning model's <think>...</think> is never spoken --------------------------
THOUGHT = "<think>\nユーザーはテストについて話している。丁寧に訳そう。\n</think>\n\n"


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64])
def test_a_think_block_is_never_spoken_however_the_stream_is_cut(chunk: int) -> None:
    raw = THOUGHT + "テストが通りました。次にコミットします。"
    out, cs = run_stream("The tests pass. Next I will commit.", raw, chunk)
    spoken = "".join(c.text for c in out)
    assert spoken == "テストが通りました。次にコミットします。"
    assert "think" not in spoken and "ユーザー" not in spoken
    assert cs.thought == len("\nユーザーはテストについて話している。丁寧に訳そう。\n")
    assert [c.last for c in out] == [False, True]


def test_only_thinking_is_an_answer_with_no_japanese() -> None:
    out, cs = run_stream("The tests pass.", "<think>テストは通った。</think>", 4)
    assert out == [] and not cs.japanese_seen  # the node retries, then fails it: never spoken


@given(
    st.lists(
        st.sampled_from(["<think>", "</think>", "考え", "訳。", "<", "</", "a<b", "\n", "x"]), max_size=12
    )
)
@settings(max_examples=300, deadline=None)
def test_think_filter_matches_the_whole_text_filtered_at_once(parts: list[str]) -> None:
    whole = ThinkFilter()
    expected = whole.feed("".join(parts)) + whole.flush()
    streamed = ThinkFilter()
    got = "".join(streamed.feed(p) for p in parts) + streamed.flush()
    assert got == expected
    assert "<think>" not in got and "</think>" not in got


def test_think_filter_that_starts_inside_drops_until_the_close() -> None:
    f = ThinkFilter(inside=True)  # the template opened the block in the prompt itself
    assert f.feed("まず考える。</th") == "" and f.feed("ink>\n\n訳です。") == "\n\n訳です。"
    assert f.feed("a < b") == "a < b" and f.feed("c <") == "c " and f.flush() == "<"  # no tag after all
