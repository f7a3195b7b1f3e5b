"""The incremental segmenter: where sentences end, that every cut of the input gives the same
sentences, that a sentence leaves as soon as it is provably complete, and the idle flush."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.ingest.text.segmenter import Segmenter

DATA = Path(__file__).parent / "data" / "ingest"


def whole(text: str, **kw: object) -> list[str]:
    seg = Segmenter(None, **kw)  # type: ignore[arg-type]
    return seg.feed(text) + seg.flush()


def chunked(text: str, cuts: list[int], **kw: object) -> list[str]:
    seg = Segmenter(None, **kw)  # type: ignore[arg-type]
    out: list[str] = []
    prev = 0
    for cut in [*sorted(set(cuts)), len(text)]:
        out += seg.feed(text[prev:cut])
        prev = cut
    return out + seg.flush()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello world. How are you? Fine!", ["Hello world.", "How are you?", "Fine!"]),
        # abbreviations that never end a sentence, and ones that may
        ("Use a tool, e.g. ruff. It is fast.", ["Use a tool, e.g. ruff.", "It is fast."]),
        ("That is, i.e. the cache. Done.", ["That is, i.e. the cache.", "Done."]),
        (
            "Mr. Smith and Dr. Jones met. Python vs. Go is old.",
            ["Mr. Smith and Dr. Jones met.", "Python vs. Go is old."],
        ),
        ("Lists, sets, etc. are built in. Then more.", ["Lists, sets, etc. are built in.", "Then more."]),
        ("We need lists, sets, etc. Then more.", ["We need lists, sets, etc.", "Then more."]),
        ("It opened at 9 a.m. and closed. Bye.", ["It opened at 9 a.m. and closed.", "Bye."]),
        ("See No. 5 for details. Ok.", ["See No. 5 for details.", "Ok."]),
        # decimals, versions, file names, URLs
        ("Pi is 3.14 roughly. Next.", ["Pi is 3.14 roughly.", "Next."]),
        ("Upgrade to v2.3.1 now. Next.", ["Upgrade to v2.3.1 now.", "Next."]),
        (
            "Edit setup.py and package.json first. Then run.",
            ["Edit setup.py and package.json first.", "Then run."],
        ),
        ("Open https://example.com/a.b?c=1. It works.", ["Open https://example.com/a.b?c=1.", "It works."]),
        ("The value x != y here. Ok.", ["The value x != y here.", "Ok."]),
        # ellipses
        ("Wait... let me check. Done.", ["Wait... let me check.", "Done."]),
        ("Loading… Finished now.", ["Loading…", "Finished now."]),
        # quotes and brackets close with their sentence
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("It failed (again.) We retry.", ["It failed (again.)", "We retry."]),
        ("**Done.** Next step.", ["**Done.**", "Next step."]),
        # inline code holds no sentence end
        ("Run `a. b` now. Ok.", ["Run `a. b` now.", "Ok."]),
        # Japanese and mixed
        ("日本語です。次の文！English here. 最後？", ["日本語です。", "次の文！", "English here.", "最後？"]),
        ("「はい。」と言った。", ["「はい。」", "と言った。"]),
        ("Done.次へ進みます。", ["Done.", "次へ進みます。"]),
        # paragraphs join their lines; blank lines end them
        ("one line\ncontinues here.\n\nNew para", ["one line\ncontinues here.", "New para"]),
        ("No end here\n\nNext para.", ["No end here", "Next para."]),
        # a pictograph ends a sentence when the next one starts after it (class: emoji, symbols)
        ("That's it for now ✅ Let me know.", ["That's it for now ✅", "Let me know."]),
        ("Shipped 🚀 2 fixes left.", ["Shipped 🚀", "2 fixes left."]),
        ("Done ✔️ Next up: tests.", ["Done ✔️", "Next up: tests."]),
        ("All green 👍🏽 See you.", ["All green 👍🏽", "See you."]),
        ("Warning ⚠ check the logs.", ["Warning ⚠ check the logs."]),  # lower case goes on
        ("I ❤️ this.", ["I ❤️ this."]),  # mid-sentence
        ("Ready ✅", ["Ready ✅"]),
    ],
)
def test_sentence_ends(text: str, expected: list[str]) -> None:
    assert whole(text) == expected


def test_markdown_blocks_end_sentences_without_punctuation() -> None:
    text = (
        "# Title\nIntro line:\n- first item\n- second item. With two sentences.\n"
        "1. numbered\n2) other\n> quoted\n> more\n\n---\nAfter the rule"
    )
    assert whole(text) == [
        "# Title",
        "Intro line:",
        "- first item",
        "- second item.",
        "With two sentences.",
        "1. numbered",
        "2) other",
        "> quoted\n> more",
        "After the rule",
    ]


def test_code_fence_gives_its_opening_line_and_drops_the_body() -> None:
    text = "Look:\n```python\nx = 1. \ny = 2! \n```\nAfter.\n~~~\nraw. text.\n~~~\nEnd."
    assert whole(text) == ["Look:", "```python", "After.", "~~~", "End."]


def test_unterminated_fence_swallows_the_rest_of_the_message_only() -> None:
    seg = Segmenter(None)
    assert seg.feed("Code:\n```\nprint('a. b. c.')\n") == ["Code:", "```"]
    assert seg.flush() == []
    assert seg.feed("New message. ") == ["New message."]


def test_inline_triple_backticks_are_not_a_fence() -> None:
    assert whole("```x``` is code. Ok.") == ["```x``` is code.", "Ok."]


def test_table_rows_are_sentences_and_long_tables_are_summarised() -> None:
    rows = "\n".join(f"| r{i} | {i} |" for i in range(5))
    text = f"Table:\n| a | b |\n|---|:-:|\n{rows}\n\nAfter."
    assert whole(text, max_table_rows=3) == [
        "Table:",
        "| a | b |",
        "| r0 | 0 |",
        "| r1 | 1 |",
        "| r2 | 2 |",
        "And 2 more rows.",
        "After.",
    ]


def test_a_sentence_with_no_end_is_cut_at_a_space_below_max_chars() -> None:
    words = " ".join(f"word{i}" for i in range(100))
    out = whole(words, max_chars=100)
    assert all(len(s) <= 100 for s in out)
    assert " ".join(out) == words


def test_a_sentence_leaves_with_the_character_that_closes_it() -> None:
    seg = Segmenter(None)
    assert seg.feed("Hello world.") == []  # "." could still be "world.py"
    assert seg.feed(" ") == ["Hello world."]
    assert seg.feed("Pi is 3.") == []
    assert seg.feed("14") == []
    assert seg.feed("! Then") == ["Pi is 3.14!"]
    assert seg.feed(" e.g.") == []
    assert seg.feed(" this.\n") == ["Then e.g. this."]
    assert seg.feed("日本語。") == []  # a closing 」 could still follow
    assert seg.feed("次") == ["日本語。"]
    assert seg.flush() == ["次"]


def test_a_list_item_leaves_at_its_newline() -> None:
    seg = Segmenter(None)
    assert seg.feed("- first item") == []
    assert seg.feed("\n") == ["- first item"]


def test_flush_resets_for_the_next_message() -> None:
    seg = Segmenter(None)
    assert seg.feed("Unfinished") == []
    assert seg.flush() == ["Unfinished"]
    assert seg.flush() == []
    assert seg.feed("# Heading\n") == ["# Heading"]


def test_poll_flushes_an_idle_sentence_and_keeps_the_open_fence() -> None:
    now = [100.0]
    seg = Segmenter(2.0, clock=lambda: now[0])
    assert seg.feed("Thinking about it") == []
    now[0] += 1.0
    assert seg.poll() == []
    now[0] += 1.5
    assert seg.poll() == ["Thinking about it"]
    assert seg.poll() == []
    assert seg.feed("\n```\nbody line") == ["```"]
    now[0] += 5
    assert seg.poll() == []  # code says nothing, idle or not
    assert seg.feed("\nmore. code.\n```\nAfter. ") == ["After."]


def test_poll_never_fires_when_disabled() -> None:
    seg = Segmenter(None, clock=lambda: 0.0)
    seg.feed("Pending")
    assert seg.poll(1e9) == []


CORPUS = [p.read_text(encoding="utf-8") for p in sorted(DATA.glob("*.md"))]
TRICKY = "ab .!?…。！？「」()\"'`*_-+|#>~\t\r\n0123456789 e.g. etc. v2.3.1 setup.py 日本 ```\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(alphabet=st.sampled_from(list(TRICKY)), max_size=200), data=st.data())
def test_chunked_feeding_equals_whole_feeding(text: str, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=30))
    assert chunked(text, cuts) == whole(text)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_chunked_feeding_equals_whole_feeding_on_the_corpus(data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(CORPUS))
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=200))
    assert chunked(text, cuts, max_table_rows=4) == whole(text, max_table_rows=4)


def test_every_single_character_cut_of_the_corpus_gives_the_same_sentences() -> None:
    for text in CORPUS:
        assert chunked(text, list(range(len(text)))) == whole(text)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300), data=st.data())
def test_arbitrary_unicode_never_breaks_the_scanner(text: str, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=20))
    out = chunked(text, cuts, max_chars=50)
    assert out == whole(text, max_chars=50)
    assert all(s.strip() == s and s for s in out)
