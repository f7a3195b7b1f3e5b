"""Markdown units -> speakable text, its options, and SentenceStream (segmenter + speakable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.ingest.text.speakable import SentenceStream, SpeakOptions, to_speakable

DATA = Path(__file__).parent / "data" / "ingest"


@pytest.mark.parametrize(
    ("unit", "said"),
    [
        ("# Summary", "Summary"),
        ("## Title ##", "Title"),
        ("- Run **make test**.", "Run make test."),
        ("1. First", "First"),
        ("  * nested item", "nested item"),
        ("- [x] Done task", "Done task"),
        ("> quoted\n> more", "quoted more"),
        ("| a.py | 3 KB |", "a.py, 3 KB"),
        ("|---|:---:|", ""),
        ("---", ""),
        ("```python", "Here is some Python code."),
        ("```", "Here is a code block."),
        ("~~~ts", "Here is some TypeScript code."),
        ("See [the docs](https://docs.python.org/3/library/re.html) now.", "See the docs now."),
        ("Go to https://github.com/anthropics/claude-code.", "Go to github.com."),
        ("Go to <https://www.example.org/x>.", "Go to example.org."),
        ("![diagram](x.png) Look at this.", "Look at this."),
        ("Edit `src/bus/node.py` and nodes/ingest.py now.", "Edit node.py and ingest.py now."),
        ("Use ~/.config/app/ for it.", "Use app for it."),
        ("and/or TCP/IP input/output", "and/or TCP/IP input/output"),
        ("Upgraded to v2.3.1 (was v2.2).", "Upgraded to version 2.3.1 (was version 2.2)."),
        # a version prefix after a word that already says it (class: version, release, rev, ver.)
        ("Version v2.3.1 is out.", "Version 2.3.1 is out."),
        ("new version v3.0, versions v1.2 / v1.3", "new version 3.0, versions 1.2 / version 1.3"),
        ("Release v1.0 ships, rev. v7.1 too.", "Release 1.0 ships, rev. 7.1 too."),
        # local URLs say host and port, and a short path (class: localhost, loopback, private, .local)
        ("Open http://localhost:3000/admin to log in.", "Open localhost port 3000, path admin to log in."),
        ("It listens on http://127.0.0.1:8080/ now.", "It listens on 127.0.0.1 port 8080 now."),
        ("Try http://192.168.1.20:5173/app/settings/x.", "Try 192.168.1.20 port 5173."),
        (
            "See http://myapp.local:8000/api/v1 for it.",
            "See myapp.local port 8000, path api slash v1 for it.",
        ),
        ("See [the dashboard](http://0.0.0.0:9090/metrics).", "See the dashboard."),
        ("Remote https://example.com:8443/x stays a host.", "Remote example.com stays a host."),
        ("✅ Tests pass 🎉", "Tests pass"),
        ("A → B", "A to B"),
        ("Restart it → it reconnects by itself.", "Restart it, then it reconnects by itself."),
        ("It takes ~5 ms, e.g. on Linux, etc.", "It takes about 5 ms, for example, on Linux, and so on."),
        ("Python vs. Go", "Python versus Go"),
        ("I used `__init__.py` and snake_case_name.", "I used __init__.py and snake_case_name."),
        ("**Note:** *this* is _important_ and ~~old~~.", "Note: this is important and old."),
        ("Use <br> tags <details>here</details>.", "Use tags here."),
        ("Call `foo.bar(baz, qux, quux, corge, grault, garply)` now.", "Call this code now."),
        ("(This is one.", "This is one."),
        ("This is two.)", "This is two."),
        ("R&D & testing", "R&D and testing"),
        ("日本語の文です。", "日本語の文です。"),
        ("**", ""),
        ("", ""),
    ],
)
def test_to_speakable(unit: str, said: str) -> None:
    assert to_speakable(unit) == said


def test_code_blocks_can_be_dropped_and_placeholders_reworded() -> None:
    assert to_speakable("```python", SpeakOptions(code_blocks="drop")) == ""
    opts = SpeakOptions(code_block_text="Code follows.", code_block_lang_text="{lang} follows.")
    assert to_speakable("```", opts) == "Code follows."
    assert to_speakable("```rust", opts) == "Rust follows."
    assert to_speakable("```weirdlang", opts) == "Code follows."


def test_url_and_path_options() -> None:
    unit = "Open https://example.com/a/b and src/app/main.py."
    assert to_speakable(unit, SpeakOptions(urls="keep", paths="keep")) == unit
    assert to_speakable(unit, SpeakOptions(urls="drop")) == "Open and main.py."


def test_options_from_config_section_are_checked() -> None:
    assert SpeakOptions.from_section({"code_blocks": "drop", "other_key": 1}).code_blocks == "drop"
    with pytest.raises(ValueError, match="code_blocks"):
        SpeakOptions.from_section({"code_blocks": "read"})
    with pytest.raises(ValueError, match="max_inline_code"):
        SpeakOptions.from_section({"max_inline_code": "40"})


def test_sentence_stream_leaves_out_units_that_say_nothing() -> None:
    stream = SentenceStream.from_section({"code_blocks": "drop", "idle_flush_s": 0})
    assert stream.segmenter.idle_flush_s is None
    out = stream.feed("Intro.\n\n---\n\n```sh\nls -la\n```\n|---|---|\n")
    assert out + stream.flush() == ["Intro."]


def test_sentence_stream_on_the_markdown_corpus() -> None:
    stream = SentenceStream()
    text = (DATA / "markdown.md").read_text(encoding="utf-8")
    out = []
    for i in range(0, len(text), 7):
        out += stream.feed(text[i : i + 7])
    out += stream.flush()
    assert out == (DATA / "markdown.expected.txt").read_text(encoding="utf-8").splitlines()
