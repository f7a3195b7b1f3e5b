"""Claude Code stream-json -> what is spoken: the corpus, de-duplication, partial messages, bad input,
the byte-level line reader, and `stream-tts segment` as a real process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nodes.ingest.text.speakable import SentenceStream
from stream_tts.claude.pipe import ingest_sentences
from stream_tts.claude.stream_json import Say, StreamJsonReader, read_lines, says

DATA = Path(__file__).parent / "data" / "ingest"
REPO = Path(__file__).resolve().parent.parent


class Trickle(io.RawIOBase):
    """A pipe that hands out `size` bytes per read: cuts lines and UTF-8 characters anywhere."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.pos, self.size = data, 0, size

    def readable(self) -> bool:
        return True

    def read1(self, n: int = -1) -> bytes:
        chunk = self.data[self.pos : self.pos + min(self.size, n if n > 0 else self.size)]
        self.pos += len(chunk)
        return chunk

    read = read1


def spoken(path: Path, subagents: bool = False, size: int = 1 << 16, streams: bool = False) -> list[str]:
    reader = StreamJsonReader(subagents=subagents)
    items = says(read_lines(Trickle(path.read_bytes(), size)), reader)  # type: ignore[arg-type]
    return [f"{s}\t{t}" if streams else t for s, t in ingest_sentences(items)]


def expected(name: str) -> list[str]:
    return (DATA / name).read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("name", ["plain", "partial", "subagents", "bad"])
@pytest.mark.parametrize("size", [1, 3, 1 << 16])
def test_corpus_says_exactly_the_expected_sentences(name: str, size: int) -> None:
    assert spoken(DATA / f"{name}.jsonl", size=size) == expected(f"{name}.expected.txt")


def test_subagent_text_is_spoken_on_its_own_stream_with_the_flag() -> None:
    got = spoken(DATA / "subagents.jsonl", subagents=True, streams=True)
    assert got == expected("subagents.subagents.expected.txt")


def test_bad_lines_are_counted_by_kind_and_reading_goes_on() -> None:
    reader = StreamJsonReader()
    items = list(says(read_lines(io.BytesIO((DATA / "bad.jsonl").read_bytes())), reader))
    assert [i.text for i in items if i.text] == [
        "First good sentence.",
        "日本語のテキストも大丈夫です。Second good sentence.",
    ]
    want = json.loads((DATA / "bad.stats.json").read_text())
    assert {k: reader.stats[k] for k in want} == want
    assert reader.bad == 7
    assert len(reader.errors) == 7 and "truncated" in reader.errors[-1]


def fixture(name: str, tmp_path: Path) -> str:
    """The fixture's path; an old CLI's hook payload is copied with its transcript folder filled in."""
    text = (DATA / name).read_text(encoding="utf-8")
    if "TRANSCRIPT_DIR" not in text:
        return str(DATA / name)
    (tmp_path / name).write_text(text.replace("TRANSCRIPT_DIR", str(DATA)), encoding="utf-8")
    return str(tmp_path / name)


def line(obj: dict[str, object]) -> bytes:
    return json.dumps(obj).encode()


def text_line(uuid: str, msg_id: str, text: str) -> bytes:
    message = {"id": msg_id, "role": "assistant", "content": [{"type": "text", "text": text}]}
    return line(
        {"type": "assistant", "message": message, "parent_tool_use_id": None, "session_id": "s", "uuid": uuid}
    )


def test_a_repeated_line_is_spoken_once_and_the_same_words_in_another_message_again() -> None:
    reader = StreamJsonReader()
    out = [
        s
        for raw in (text_line("u1", "m1", "Ok."), text_line("u1", "m1", "Ok."), text_line("u2", "m2", "Ok."))
        for s in reader.line(raw)
    ]
    assert out == [Say("s", "Ok.", True), Say("s", "Ok.", True)]
    assert reader.stats["duplicate_lines"] == 1


def test_blocks_of_one_message_on_separate_lines_are_all_spoken() -> None:
    """message.id is shared by every block's line: keying on it alone would drop the second block."""
    reader = StreamJsonReader()
    out = reader.line(text_line("u1", "m1", "First block.")) + reader.line(
        text_line("u2", "m1", "Second block.")
    )
    assert [s.text for s in out] == ["First block.", "Second block."]


def test_lines_without_uuid_are_keyed_on_message_id_and_content() -> None:
    reader = StreamJsonReader()
    raw = line({"type": "assistant", "message": {"id": "m1", "content": [{"type": "text", "text": "Hi."}]}})
    other = line(
        {"type": "assistant", "message": {"id": "m1", "content": [{"type": "text", "text": "Bye."}]}}
    )
    assert [s.text for r in (raw, raw, other) for s in reader.line(r)] == ["Hi.", "Bye."]


def ev(event: dict[str, object], uuid: str) -> bytes:
    return line(
        {"type": "stream_event", "event": event, "session_id": "s", "parent_tool_use_id": None, "uuid": uuid}
    )


def test_with_partial_messages_each_sentence_leaves_with_the_delta_that_closes_it() -> None:
    lines = [
        ev({"type": "message_start", "message": {"id": "m1", "content": []}}, "e0"),
        ev({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, "e1"),
        ev(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "It is 3"}},
            "e2",
        ),
        ev(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ".14 wide."}},
            "e3",
        ),
        ev(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " Next"}},
            "e4",
        ),
        ev(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " one"}}, "e5"
        ),
        text_line("a1", "m1", "It is 3.14 wide. Next one"),
        ev({"type": "content_block_stop", "index": 0}, "e6"),
        ev({"type": "message_stop"}, "e7"),
    ]
    reader, stream = StreamJsonReader(), SentenceStream(idle_flush_s=None)
    when: list[tuple[int, str]] = []
    for i, raw in enumerate(lines):
        for say in reader.line(raw):
            out = stream.feed(say.text) + (stream.flush() if say.final else [])
            when += [(i, s) for s in out]
    assert when == [(4, "It is 3.14 wide."), (7, "Next one")]
    assert reader.stats["text_blocks_already_streamed"] == 1


def test_thinking_and_tool_input_deltas_are_not_spoken() -> None:
    reader = StreamJsonReader()
    out = []
    out += reader.line(ev({"type": "message_start", "message": {"id": "m1"}}, "e0"))
    out += reader.line(
        ev({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}}, "e1")
    )
    out += reader.line(
        ev(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "secret."},
            },
            "e2",
        )
    )
    out += reader.line(
        ev(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"a": '},
            },
            "e3",
        )
    )
    out += reader.line(ev({"type": "content_block_stop", "index": 0}, "e4"))
    assert out == []


def test_a_sentence_split_across_a_surrogate_pair_is_joined() -> None:
    reader = StreamJsonReader()
    raw = [
        b'{"type":"stream_event","event":{"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"Ship it \\ud83d"}},"session_id":"s","uuid":"1"}',
        b'{"type":"stream_event","event":{"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"\\ude80 now."}},"session_id":"s","uuid":"2"}',
        b'{"type":"stream_event","event":{"type":"content_block_stop","index":0},"session_id":"s","uuid":"3"}',
    ]
    text = "".join(s.text for r in raw for s in reader.line(r))
    assert text == "Ship it \U0001f680 now."
    text.encode("utf-8")  # no lone surrogate reaches the bus


def test_read_lines_never_splits_a_multibyte_character() -> None:
    payload = "".join(f'{{"n": {i}, "t": "日本語🎉{i}"}}\n' for i in range(50)).encode()
    got = [json.loads(x.data)["t"] for x in read_lines(Trickle(payload, 1))]  # type: ignore[arg-type]
    assert got == [f"日本語🎉{i}" for i in range(50)]


def test_an_oversize_line_is_skipped_without_buffering_and_reading_goes_on() -> None:
    big = b'{"type": "assistant", "x": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    data = text_line("u1", "m1", "Before.") + b"\n" + big + b"\n" + text_line("u2", "m2", "After.") + b"\n"
    reader = StreamJsonReader()
    items = list(says(read_lines(io.BytesIO(data), max_line_bytes=1 << 20), reader))
    assert [s.text for s in items if not s.flush] == ["Before.", "After."]
    assert reader.stats["oversize"] == 1


def test_tee_copies_every_byte_unchanged() -> None:
    data = (DATA / "bad.jsonl").read_bytes()
    out = io.BytesIO()
    list(read_lines(Trickle(data, 5), tee=out))  # type: ignore[arg-type]
    assert out.getvalue() == data


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["--format", "stream-json", "partial.jsonl"], "partial.expected.txt"),
        (
            ["--format", "stream-json", "--subagents", "--streams", "subagents.jsonl"],
            "subagents.subagents.expected.txt",
        ),
        (["markdown.md"], "markdown.expected.txt"),
        (["--format", "hook", "hook-stop.json"], "hook-stop.expected.txt"),
        (["--format", "hook", "hook-stop-old.json"], "hook-stop-old.expected.txt"),
        (["--format", "hook", "hook-subagentstop.json"], "hook-subagentstop.expected.txt"),
        (["--format", "hook", "hook-subagentstop-old.json"], "hook-subagentstop-old.expected.txt"),
        (["--format", "hook", "hook-notification.json"], "hook-notification.expected.txt"),
    ],
)
def test_segment_cli_prints_the_expected_sentences(args: list[str], name: str, tmp_path: Path) -> None:
    args = [fixture(a, tmp_path) if (DATA / a).exists() else a for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", "segment", *args],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "STREAM_TTS_DATA_DIR": "/tmp"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().splitlines() == expected(name)


def test_segment_cli_applies_the_config_ingest_options(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[ingest]\ncode_blocks = "drop"\nurls = "keep"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", "segment", "--config", str(cfg), "-"],
        cwd=REPO,
        input=b"See https://a.example/x.\n```py\nx\n```\nDone.",
        capture_output=True,
        timeout=60,
    )
    assert proc.stdout.decode().splitlines() == ["See https://a.example/x.", "Done."]


# ---- over-deep lines (issue #23): json.loads raised RecursionError and the reader died -----------
DEEP = b"[" * 5000 + b"]" * 5000


def deep_input() -> bytes:
    deep_object = b'{"type": "assistant", "message": ' * 3000 + b"1" + b"}" * 3000
    return b"\n".join(
        [
            text_line("u1", "m1", "Before the deep lines."),
            DEEP,
            deep_object,
            text_line("u2", "m2", "After them."),
            b"",
        ]
    )


def test_an_over_deep_line_is_a_bad_line_and_reading_goes_on() -> None:
    reader = StreamJsonReader()
    items = list(says(read_lines(io.BytesIO(deep_input())), reader))
    assert [s.text for s in items if s.text] == ["Before the deep lines.", "After them."]
    assert reader.stats["too_deep"] == 2 and reader.bad == 2
    assert reader.errors == [
        "line 2: too_deep: JSON nested deeper than 64 levels",
        "line 3: too_deep: JSON nested deeper than 64 levels",
    ]


def test_json_nested_up_to_the_limit_is_read() -> None:
    reader = StreamJsonReader()
    ok = b'{"type": "system", "x": ' + b"[" * 62 + b"]" * 62 + b"}"
    assert reader.line(ok) == [] and reader.stats["skipped_system"] == 1 and reader.bad == 0
    # brackets inside strings do not count
    assert reader.line(text_line("u", "m", "[" * 500 + " {{{ text")) and reader.bad == 0


def test_segment_cli_skips_an_over_deep_line_and_goes_on(tmp_path: Path) -> None:
    src = tmp_path / "deep.jsonl"
    src.write_bytes(deep_input())
    proc = subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", "segment", "--format", "stream-json", str(src)],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "STREAM_TTS_DATA_DIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.decode().splitlines() == ["Before the deep lines.", "After them."]
    assert "W segment: skipped line 2: too_deep" in proc.stderr.decode()
    assert b"Traceback" not in proc.stderr


def test_segment_cli_refuses_an_over_deep_hook_payload_with_a_message(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "stream_tts.cli", "segment", "--format", "hook", "-"],
        cwd=REPO,
        input=DEEP,
        capture_output=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "STREAM_TTS_DATA_DIR": str(tmp_path)},
    )
    assert proc.returncode == 1 and proc.stderr.decode().startswith("E segment: "), proc.stderr.decode()[
        -2000:
    ]
    assert b"Traceback" not in proc.stderr
