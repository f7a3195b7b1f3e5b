"""Japanese text as it streams out of the translator: split into clauses, cleaned, made whole.

`ClauseSplitter` cuts a streamed decode at 。！？ (and at 、 once the clause is long enough to be
spoken well) without ever losing or repeating a character, and cuts the same way however the text
was chunked. A clause is never longer than the bus carries (bus/messages.py MAX_CLAUSE_CHARS, which
is also what synthesize's engine takes at once): text with no break is cut there as it streams,
and a clause that restoring its placeholders made longer is cut again (at a space if there is one).
`clean_clause` removes what must not be spoken: quotes, labels ("Translation:", "翻訳:"),
parenthesised notes, markdown, and lines with no Japanese (romaji, English commentary).
`ClauseStream` puts them together for one translation attempt: pieces in, clean clauses out with
placeholders restored (nodes/translate/placeholders.py), the last one marked, nothing released before the
first real Japanese so a failed attempt can be retried without having said anything.
`ThinkFilter` takes a reasoning model's <think>...</think> out of the stream before any of that, so
thinking is never spoken, whichever engine sent it (the llama engine filters too).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from bus.messages import MAX_CLAUSE_CHARS
from nodes.translate.placeholders import placeholder, restore

TERMINATORS = "。！？!?"  # always end a clause
SOFT_BREAKS = "、，,"  # end a clause once it has min_clause_chars
CLOSERS = "」』）)】〕〉》”’\"'"  # stay with the clause they close: 「…。」
OPENERS = "「『（(【〔〈《“‘"
MAX_BRACKET_CHARS = 120  # an opener never closed stops shielding its breaks after this many

_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f々〆ヶ]")
_PLACEHOLDER_LIKE = re.compile(r"(?:⟦|\[\[|【|〚|［［)\s*(\d{1,3})\s*(?:⟧|\]\]|】|〛|］］)")
_PLACEHOLDER = re.compile(r"⟦\d+⟧")
_LABEL = re.compile(
    r"^\s*(?:(?:japanese\s+)?translation|japanese|answer|output|result|"
    r"日本語訳|翻訳結果|翻訳|日本語|訳文|訳)\s*[:：]\s*",
    re.IGNORECASE,
)
_COMMENTARY_TAIL = re.compile(r"\s+[-–—]+\s+.*$")  # "文です。 - This is a sentence."
_PAREN = re.compile(r"（[^（）]*）|\([^()]*\)|\[[^\[\]]*\]")
_QUOTES = re.compile(r"[「」『』“”\"＂‘’]")
_MARKDOWN = re.compile(r"\*\*|__|`|^\s*(?:#{1,6}|[-*•]|>)\s+", re.MULTILINE)
_SPACES = re.compile(r"\s+")
_UNSPEAKABLE = re.compile(r"^[\s\W_]*$")  # punctuation / symbols only


THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


class ThinkFilter:
    """Streamed text in, the same text without any <think>...</think> block out.

    Reasoning models (Qwen3 with thinking on) write their thoughts between these tags before the
    answer. Thinking is switched off in the prompt (nodes/translate/llama/engine.py), but a model
    may think anyway, and none of it may reach speech. Tags split across pieces are recognised
    (a piece ending in a tag's beginning is held back until the next piece says what it is); an
    unclosed block swallows the rest; a stray closing tag is dropped. `inside`: the prompt itself
    opened the block (a thinking-only template), so the answer begins inside it."""

    def __init__(self, inside: bool = False) -> None:
        self.inside = inside
        self.thought = 0  # characters of thinking dropped so far
        self._held = ""

    def feed(self, piece: str) -> str:
        text, self._held = self._held + piece, ""
        out: list[str] = []
        while text:
            tag = THINK_CLOSE if self.inside else THINK_OPEN
            i = text.find(tag)
            stray = -1 if self.inside else text.find(THINK_CLOSE)
            if stray >= 0 and (i < 0 or stray < i):  # "</think>" with none open: drop the tag
                out.append(text[:stray])
                text = text[stray + len(THINK_CLOSE) :]
                continue
            if i < 0:
                keep = _partial_tag(text)
                body, self._held = text[: len(text) - keep], text[len(text) - keep :]
                if self.inside:
                    self.thought += len(body)
                else:
                    out.append(body)
                break
            if self.inside:
                self.thought += i
            else:
                out.append(text[:i])
            self.inside = not self.inside
            text = text[i + len(tag) :]
        return "".join(out)

    def flush(self) -> str:
        """What was held back as a possible tag, when no more text comes (never inside a block)."""
        held, self._held = self._held, ""
        return "" if self.inside else held


def _partial_tag(text: str) -> int:
    """How many characters at the end of `text` may begin a think tag ("<", "</thi", ...)."""
    for n in range(min(len(THINK_CLOSE) - 1, len(text)), 0, -1):
        tail = text[-n:]
        if THINK_OPEN.startswith(tail) or THINK_CLOSE.startswith(tail):
            return n
    return 0


def is_japanese(text: str) -> bool:
    """Has at least one kana or kanji (what a translation into Japanese must have)."""
    return bool(_JAPANESE.search(text))


def _spoken_len(text: str, originals: Sequence[str] = ()) -> int:
    """Characters that are spoken: no spaces or punctuation; a placeholder counts as what it
    stands for (a file name takes longer to say than ⟦0⟧ suggests)."""
    if originals:
        text = _PLACEHOLDER.sub(lambda m: _original(m.group(0), originals), text)
    return sum(1 for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def _original(ph: str, originals: Sequence[str]) -> str:
    i = int(ph[1:-1])
    return originals[i] if i < len(originals) else ph


class ClauseSplitter:
    """Cut streamed text into clauses; `"".join(fed) == "".join(clauses) + flush()`, always."""

    def __init__(
        self, min_clause_chars: int = 8, originals: Sequence[str] = (), max_chars: int = MAX_CLAUSE_CHARS
    ) -> None:
        self.min_clause_chars = min_clause_chars
        self.originals = originals  # what ⟦n⟧ in the text stands for, to measure clause length
        self.max_chars = max_chars  # a clause with no break in this many characters is cut here
        self._buf: list[str] = []
        self._depth = 0  # open brackets in the current clause
        self._ended = ""  # the terminator seen; the clause goes once a non-closer follows

    @property
    def pending(self) -> str:
        return "".join(self._buf)

    def feed(self, text: str) -> list[str]:
        out: list[str] = []
        for ch in text:
            if self._ended:
                after_end = self._ended in TERMINATORS and ch in TERMINATORS  # ？！ 。。
                if self._ended != "\n" and (ch in CLOSERS or after_end):
                    self._buf.append(ch)
                    continue
                out.append(self.flush())
            self._buf.append(ch)
            if ch in OPENERS:
                self._depth += 1
            elif ch in CLOSERS and self._depth:
                self._depth -= 1
                before = self._buf[-2] if len(self._buf) > 1 else ""
                if not self._depth and before in TERMINATORS:
                    self._ended = before  # 「…。」 ends where its quote ends
                    continue
            if self._depth and len(self._buf) > MAX_BRACKET_CHARS:
                self._depth = 0
            if self._is_break(ch):
                if ch in SOFT_BREAKS:  # outside brackets nothing closes after 、: go now, one
                    out.append(self.flush())  # decoded token sooner than waiting to see the next
                else:
                    self._ended = ch
            elif len(self._buf) >= self.max_chars and not self._in_placeholder():
                out.append(self.flush())  # no break in max_chars: cut, or it never ends
        return out

    def _in_placeholder(self) -> bool:
        """The text ends inside a ⟦n⟧ (at most 5 characters): a cut would break it."""
        tail = "".join(self._buf[-5:])
        return tail.rfind("⟦") > tail.rfind("⟧")

    def _is_break(self, ch: str) -> bool:
        if ch == "\n":
            return True
        if self._depth:
            return False  # a break inside brackets or quotes belongs to them
        if ch in TERMINATORS:
            return True
        return ch in SOFT_BREAKS and _spoken_len(self.pending, self.originals) >= self.min_clause_chars

    def flush(self) -> str:
        """Whatever is held (a finished clause waiting for closers, or an unfinished one)."""
        text = "".join(self._buf)
        self._buf, self._depth, self._ended = [], 0, ""
        return text


def canonical_placeholders(text: str) -> str:
    """Rewrite the look-alikes a model writes ([[0]], 【0】, ⟦ 0 ⟧) as ⟦0⟧."""
    return _PLACEHOLDER_LIKE.sub(lambda m: placeholder(int(m.group(1))), text)


def clean_clause(text: str, line_start: bool = False) -> str:
    """What of one clause may be spoken ("" when nothing): no quotes, notes, labels, markdown,
    commentary, or lines without Japanese. Placeholders (⟦n⟧) are kept."""
    text = canonical_placeholders(text)
    text = "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch)[0] != "C")
    text = text.replace("\ufffd", "")
    text = _MARKDOWN.sub("", text)
    if line_start:
        text = _LABEL.sub("", text)
    # Notes in brackets go; a bracket holding a placeholder keeps the placeholder.
    text = _PAREN.sub(lambda m: " ".join(_PLACEHOLDER.findall(m.group(0))), text)
    text = _QUOTES.sub("", text)
    text = _COMMENTARY_TAIL.sub(lambda m: m.group(0) if is_japanese(m.group(0)) else "", text)
    text = _SPACES.sub(" ", text).strip()
    bare = _PLACEHOLDER.sub("", text)
    if re.search(r"[A-Za-z]", bare) and not is_japanese(bare):
        return ""  # romaji, English commentary, a label line
    if _UNSPEAKABLE.match(bare) and not _PLACEHOLDER.search(text):
        return ""
    return text


def bounded(text: str, max_chars: int = MAX_CLAUSE_CHARS) -> list[str]:
    """`text` in pieces of at most `max_chars`, each cut at its last space when that is not too
    early, else hard; "".join(pieces) == text. Short text (nearly always) is one piece."""
    pieces: list[str] = []
    while len(text) > max_chars:
        space = text.rfind(" ", max_chars // 2, max_chars)
        cut = space + 1 if space > 0 else max_chars
        pieces.append(text[:cut])
        text = text[cut:]
    return [*pieces, text] if text or not pieces else pieces


@dataclass(frozen=True)
class OutClause:
    text: str
    last: bool


@dataclass
class ClauseStream:
    """One translation attempt: raw decoded pieces in, clean clauses (placeholders restored) out.

    One line of Japanese is the whole translation: a newline after Japanese text ends the
    stream (`done`), and the caller stops decoding. Clauses are held back until the first one
    with Japanese, so a failed attempt (no Japanese at all) has released nothing.
    """

    originals: Sequence[str] = ()
    min_clause_chars: int = 8
    japanese_seen: bool = False
    done: bool = False
    released: int = 0
    dropped: list[str] = field(default_factory=list)  # raw clauses that had nothing to say
    missing: list[str] = field(default_factory=list)  # placeholders the model lost (re-appended)
    duplicates: int = 0
    masked: list[str] = field(default_factory=list)  # clean clauses, placeholders not yet restored
    _seen: set[int] = field(default_factory=set)
    _held: list[str] = field(default_factory=list)
    _said: list[str] = field(default_factory=list)
    _line_start: bool = True

    def __post_init__(self) -> None:
        self._splitter = ClauseSplitter(self.min_clause_chars, self.originals)
        self._think = ThinkFilter()

    def feed(self, piece: str) -> list[OutClause]:
        if self.done or not piece:
            return []
        return self._feed(self._think.feed(piece))

    def _feed(self, piece: str) -> list[OutClause]:
        if self.done or not piece:
            return []
        head, newline, tail = piece.partition("\n")
        out = self._take(self._splitter.feed(head))
        if newline:
            line_so_far = clean_clause(self._splitter.pending, self._line_start)
            if self.japanese_seen or is_japanese(line_so_far):
                self.done = True  # the rest is commentary, romaji, or a second opinion
                return out
            out += self._take([*self._splitter.feed("\n")])
            out += self._feed(tail)
        return out

    @property
    def thought(self) -> int:
        """Characters of <think>...</think> taken out of this attempt (never spoken)."""
        return self._think.thought

    def finish(self) -> list[OutClause]:
        """The last clause (marked last), with any placeholder the model dropped appended. Empty
        when nothing Japanese came: the caller retries or reports the failure."""
        rest = self._think.flush()  # a "<" held back as a possible tag: it was text after all
        early = self._take(self._splitter.feed(rest)) if rest and not self.done else []
        text = self._clause(self._splitter.flush()) or ""
        said = "".join([*self._said, text])
        # lost placeholders, unless the model wrote the original itself ("3件" for ⟦1⟧件)
        self.missing = [o for i, o in enumerate(self.originals) if i not in self._seen and o not in said]
        if self.missing:
            text = " ".join([text, *self.missing]).strip()
        if not self.japanese_seen:
            return []
        *held, last = [*self._held, *bounded(text)]
        self._held = []
        self.released += len(held) + 1
        return [*early, *(OutClause(t, False) for t in held), OutClause(last, True)]

    def _take(self, raw_clauses: list[str]) -> list[OutClause]:
        for raw in raw_clauses:
            text = self._clause(raw)
            if text:
                self._held += bounded(text)
        if not self.japanese_seen:
            return []
        held, self._held = self._held, []
        self.released += len(held)
        return [OutClause(t, False) for t in held]

    def _clause(self, raw: str) -> str | None:
        line_start, self._line_start = self._line_start, raw.endswith("\n")
        cleaned = clean_clause(raw, line_start)
        if not cleaned:
            if raw.strip():
                self.dropped.append(raw)
            return None
        if is_japanese(cleaned):
            self.japanese_seen = True
        self.masked.append(cleaned)
        restored = restore(cleaned, self.originals, self._seen)
        self.duplicates += restored.duplicates
        self._said.append(restored.text)
        return restored.text
