"""Incremental sentence segmentation of streamed markdown: deltas in, whole sentences out, once each.

Why a scanner and not a regex over a buffer: text arrives as token deltas that cut words, numbers
and characters anywhere, and the same text must give the same sentences however it was cut. So
`Segmenter` is a left-to-right scanner whose every decision depends only on the text up to the
point it decides at plus a short look-ahead; when the look-ahead is not there yet it stops and
waits for the next `feed` (or decides with "end of text" on `flush`). That makes
`feed(a) + feed(b) + flush()` equal to `feed(a + b) + flush()` for every cut, and makes a sentence
leave as soon as the character that proves it complete has arrived.

It works on the raw markdown, because block structure decides where sentences end:
- paragraphs: a sentence ends at . ! ? (plus closing quotes, brackets, `**`) followed by
  whitespace, and at 。！？ (Japanese needs no space). Not at decimals (3.14), versions (v2.3.1),
  file names (setup.py), URLs, abbreviations that never end a sentence (e.g. i.e. Mr. Dr. vs.),
  or inside inline code. Abbreviations that may end one (etc. a.m. U.S.) and ellipses end it when
  the next word starts with a capital (or nothing follows). Lines of a paragraph join; a blank line
  or a following block (list item, heading, table, fence, quote, rule) ends the pending sentence.
- list items, headings and table rows end at their line end: items without final punctuation
  still become sentences. Table separator rows are dropped; past `max_table_rows` body rows the
  rest are counted and said as one "And N more rows." at the table's end.
- fenced code blocks: the opening fence line ("```python") is emitted as one unit, so speech can
  say "here is some code" as it starts (speakable.py decides the words); the body is dropped.
- a sentence longer than `max_chars` is cut at its last space, so no message outgrows the bus.

Units come out as raw markdown (markers included); `speakable.to_speakable` turns each into what
is said. `SentenceStream` in speakable.py chains the two; ingest and `stream-tts segment` both use it
so that what `segment` prints is what ingest sends.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from enum import Enum

DEFAULT_IDLE_FLUSH_S = 2.0  # a sentence with no end leaves after this much silence (poll)
DEFAULT_MAX_CHARS = 600  # longer sentences are cut at a space: bounded messages, bounded TTS input
DEFAULT_MAX_TABLE_ROWS = 8  # body rows read aloud per table; the rest are summarised

LATIN_TERMS = ".!?…"
CJK_TERMS = "。！？．"
CLOSERS = "\"')]}»”’*_」』）】〉》"
OPENERS = "\"'([{«“‘*_`「『（【"
# Abbreviations (lower case, without the final dot) that never end a sentence: a word follows.
NEVER_END = frozenset(
    {
        "e.g",
        "i.e",
        "cf",
        "viz",
        "vs",
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "st",
        "jr",
        "sr",
        "approx",
        "fig",
        "eq",
        "ref",
        "sec",
        "ch",
        "vol",
        "pp",
        "ca",
        "incl",
        "esp",
        "resp",
        "w.r.t",
    }
)
# Abbreviations that may end a sentence: they do when the next word is not lower case.
MAYBE_END = frozenset({"etc", "a.m", "p.m", "u.s", "u.k", "inc", "ltd", "co", "corp", "al", "approx"})
_INITIALISM = re.compile(r"(?:[a-z]\.)+[a-z]")

# Pictographs and other symbols a sentence may end with instead of punctuation ("Done ✅ Next…").
SYMBOL_ENDS = "\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff"
SYMBOL_TAIL = "\ufe0f\u200d\u20e3\U0001f3fb-\U0001f3ff"  # variation selector, joiner, keycap, skin tone
_SYMBOL = re.compile(f"[{SYMBOL_ENDS}]")
_SYMBOL_RUN = re.compile(f"[{SYMBOL_ENDS}{SYMBOL_TAIL}]*")
_INTERESTING = re.compile(f"[\n`.!?…。！？．{SYMBOL_ENDS}]")
_HEADING = re.compile(r"#{1,6}(?:[ \t]|$)")
_BULLET = re.compile(r"[-*+][ \t]")
_ORDERED = re.compile(r"\d{1,9}[.)](?:[ \t]|$)")
_ORDERED_PREFIX = re.compile(r"\d{1,9}[.)]?")
_HR = re.compile(r"([-*_])[ \t]*(?:\1[ \t]*){2,}")
_HR_PREFIX = re.compile(r"([-*_])[ \t]*(?:\1[ \t]*)*")
_FENCE = re.compile(r"(`{3,}|~{3,})(.*)")
_SEPARATOR_ROW = re.compile(r"\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*")


class Kind(Enum):
    """What a line of markdown is, decided from its first characters."""

    BLANK = "blank"
    PARA = "para"
    LIST = "list"
    QUOTE = "quote"
    HEADING = "heading"
    TABLE = "table"
    FENCE = "fence"
    RULE = "rule"


def classify(line: str, complete: bool) -> tuple[Kind, int] | None:
    """The kind of a line and where its text starts after the marker; None if more is needed.

    `line` runs from the line start to its newline (excluded) or to the end of what has arrived;
    `complete` says whether the line is whole (newline seen, or end of text)."""
    s = line.lstrip(" \t")
    indent = len(line) - len(s)
    s = s.rstrip("\r") if complete else s
    if not s.strip():
        return (Kind.BLANK, len(line)) if complete else None
    c = s[0]
    if c in "`~":
        m = _FENCE.match(s)
        if m is None:
            return None if (not complete and s == c * len(s)) else (Kind.PARA, indent)
        if not complete:
            return None
        if c == "`" and "`" in m.group(2):
            return (Kind.PARA, indent)  # ```inline``` code on one line, not a fence
        return (Kind.FENCE, indent)
    if c == "#":
        if not complete and len(s) <= 6 and s == "#" * len(s):
            return None  # "#" alone: a heading only if a space or the line end follows
        return (Kind.HEADING, indent) if _HEADING.match(s) else (Kind.PARA, indent)
    if c == "|":
        return (Kind.TABLE, indent)
    if c == ">":
        return (Kind.QUOTE, indent)
    if c in "-*_+":
        if not complete and len(s) == 1:
            return None  # a bullet only if a space follows
        if c != "+" and _HR_PREFIX.fullmatch(s):
            if not complete:
                return None
            if _HR.fullmatch(s):
                return (Kind.RULE, len(line))
        if m := _BULLET.match(s):
            return (Kind.LIST, indent + m.end())
        return (Kind.PARA, indent)
    if c.isdigit():
        if not complete and _ORDERED_PREFIX.fullmatch(s):
            return None  # "1." alone: a list marker only if a space or the line end follows
        if m := _ORDERED.match(s):
            return (Kind.LIST, indent + m.end())
    return (Kind.PARA, indent)


class _Wait(Exception):
    """The look-ahead needed for a decision has not arrived yet."""


class Segmenter:
    """Splits one message's streamed markdown into sentences (raw markdown units), each once.

    `feed(text)` returns the units completed by `text`; `flush()` returns what is pending at the
    end of the message and resets; `poll(now)` returns the pending sentence once no text came for
    `idle_flush_s` (None: never), keeping block state (an open code fence stays open)."""

    def __init__(
        self,
        idle_flush_s: float | None = DEFAULT_IDLE_FLUSH_S,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        max_table_rows: int = DEFAULT_MAX_TABLE_ROWS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_chars < 20:
            raise ValueError("max_chars must be at least 20")
        self.idle_flush_s = idle_flush_s
        self.max_chars = max_chars
        self.max_table_rows = max_table_rows
        self._clock = clock
        self._reset()
        self._last_feed = clock()

    def _reset(self) -> None:
        self._buf = ""
        self._i = 0  # scan position in _buf
        self._from = 0  # where the pending unit's text starts in _buf
        self._line_start = True  # _i is at the start of a line that is not classified yet
        self._kind: Kind | None = None  # kind of the current line (once classified)
        self._prev: Kind | None = None  # kind of the last line, for paragraph continuation
        self._fence = ""  # the open code fence's marker ("```", "~~~~"), "" outside code
        self._code = 0  # length of the backtick run that opened an inline code span, 0 outside
        self._rows = 0  # rows of the current table (header included, separator not)
        self._hidden_rows = 0

    # ---- API -------------------------------------------------------------------------------
    def feed(self, text: str) -> list[str]:
        self._last_feed = self._clock()
        if not text:
            return []
        self._buf += text
        return self._run(final=False)

    def flush(self) -> list[str]:
        out = self._run(final=True)
        out += self._end_unit(len(self._buf))
        out += self._end_table()
        self._reset()
        return out

    def poll(self, now: float | None = None) -> list[str]:
        if self.idle_flush_s is None or not self.pending.strip():
            return []
        now = self._clock() if now is None else now
        if now - self._last_feed < self.idle_flush_s:
            return []
        out = self._run(final=True)
        return out + self._end_unit(self._i)

    @property
    def pending(self) -> str:
        """Text received and not yet emitted (code bodies excluded)."""
        return "" if self._fence and self._line_start else self._buf[self._from :]

    # ---- the scanner -----------------------------------------------------------------------
    def _run(self, final: bool) -> list[str]:
        out: list[str] = []
        try:
            while self._i < len(self._buf):
                if self._line_start:
                    self._start_line(out, final)
                elif self._kind in (Kind.HEADING, Kind.TABLE):
                    self._whole_line(out, final)
                else:
                    self._prose(out, final)
        except _Wait:
            pass
        if self._from > 4096:  # drop consumed text now and then (amortised O(n))
            self._buf = self._buf[self._from :]
            self._i -= self._from
            self._from = 0
        return out

    def _line_end(self, final: bool) -> tuple[int, bool]:
        """(end of the current line, whether it is complete); _Wait if it is partial and not final."""
        nl = self._buf.find("\n", self._i)
        if nl >= 0:
            return nl, True
        return len(self._buf), final

    def _start_line(self, out: list[str], final: bool) -> None:
        buf, i = self._buf, self._i
        end, complete = self._line_end(final)
        if self._fence:
            if not complete:
                raise _Wait
            body = buf[i:end].strip()
            if body.startswith(self._fence) and not body.strip(self._fence[0]):
                self._fence = ""
            self._next_line(end)
            self._from = self._i
            return
        got = classify(buf[i:end], complete)
        if got is None:
            if final:  # cannot happen: complete lines always classify
                raise AssertionError("unclassified complete line")
            raise _Wait
        kind, offset = got
        if kind is not Kind.TABLE:
            out += self._end_table()
        joins = (kind is Kind.PARA and self._prev in (Kind.PARA, Kind.QUOTE)) or (
            kind is Kind.QUOTE and self._prev is Kind.QUOTE
        )
        if not joins:
            out += self._end_unit(i)
            self._from = i
        self._code = 0
        if kind in (Kind.BLANK, Kind.RULE):
            self._prev = None
            self._next_line(end)
            self._from = self._i
        elif kind is Kind.FENCE:
            fence = _FENCE.match(buf[i:end].strip())
            assert fence is not None
            out += self._emit(end)
            self._fence = fence.group(1)
            self._prev = None
            self._next_line(end)
            self._from = self._i
        else:
            self._kind = kind
            self._line_start = False
            self._i = i + offset

    def _next_line(self, end: int) -> None:
        self._i = min(end + 1, len(self._buf))
        self._line_start = True

    def _whole_line(self, out: list[str], final: bool) -> None:
        end, complete = self._line_end(final)
        if not complete:
            self._i = end
            raise _Wait
        if self._kind is Kind.TABLE:
            row = self._buf[self._from : end].strip()
            if _SEPARATOR_ROW.fullmatch(row):
                pass
            elif self._rows > self.max_table_rows:
                self._rows += 1
                self._hidden_rows += 1
            else:
                self._rows += 1
                out += self._emit(end)
            self._from = end
        else:
            out += self._emit(end)
        self._prev = self._kind
        self._next_line(end)
        self._from = max(self._from, self._i)

    def _prose(self, out: list[str], final: bool) -> None:
        """Paragraph, list item and quote text: sentence ends, inline code, the length cap."""
        buf = self._buf
        limit = max(self._from + self.max_chars, self._i + 1)
        m = _INTERESTING.search(buf, self._i, min(limit, len(buf)))
        if m is None:
            if len(buf) >= limit:
                out += self._cut(limit)
                return
            self._i = len(buf)
            raise _Wait
        j = m.start()
        ch = buf[j]
        if ch == "\n":
            self._code = 0
            if self._kind is Kind.LIST:
                out += self._emit(j)
            self._prev = self._kind
            self._i = j + 1
            self._line_start = True
            return
        if ch == "`":
            k = j
            while k < len(buf) and buf[k] == "`":
                k += 1
            if k == len(buf) and not final:
                self._i = j
                raise _Wait
            run = k - j
            self._code = 0 if self._code == run else (self._code or run)
            self._i = k
            return
        if self._code:
            self._i = j + 1
            return
        self._i = j
        ends, k = self._sentence_end(j, final)
        if ends:
            out += self._emit(k)
        self._i = k

    def _cut(self, limit: int) -> list[str]:
        """A sentence with no end in `max_chars`: cut at its last space (or hard at the limit)."""
        space = self._buf.rfind(" ", max(self._i, self._from + self.max_chars // 4), limit)
        at = space if space > 0 else limit
        self._i = at
        return self._emit(at)

    def _sentence_end(self, j: int, final: bool) -> tuple[bool, int]:
        """Whether the terminator at `j` ends a sentence, and where scanning goes on."""
        buf, n = self._buf, len(self._buf)
        k = j
        if _SYMBOL.match(buf, j):  # a pictograph ends a sentence when the next one starts after it
            k = _SYMBOL_RUN.match(buf, j).end()  # type: ignore[union-attr]
            if k == n:
                if final:
                    return True, k
                raise _Wait
            if not buf[k].isspace():
                return False, k
            c = _next_significant(buf, k, final)
            return bool(c) and (c.isupper() or c.isdigit() or bool(_SYMBOL.match(c))), k
        if buf[j] in CJK_TERMS:
            while k < n and buf[k] in CJK_TERMS + LATIN_TERMS:
                k += 1
            while k < n and buf[k] in CLOSERS:
                k += 1
            if k == n and not final:
                raise _Wait
            return True, k
        while k < n and buf[k] in LATIN_TERMS:
            k += 1
        run = buf[j:k]
        while k < n and buf[k] in CLOSERS:
            k += 1
        if k == n:
            if final:
                return True, k
            raise _Wait
        nxt = buf[k]
        if not nxt.isspace():
            return (nxt >= "\u3000"), k  # "3.14", "setup.py", "e.g.,"; but "Done.次は" ends
        if run == ".":
            word = _word_before(buf, j)
            if word in NEVER_END:
                return False, k
            if word == "no":
                c = _next_significant(buf, k, final)
                return not (c and c.isdigit()), k
            if word in MAYBE_END or _INITIALISM.fullmatch(word):
                c = _next_significant(buf, k, final)
                return not (c and c.islower()), k
            return True, k
        if "…" in run or ".." in run:
            c = _next_significant(buf, k, final)
            return not (c and c.islower()), k
        return True, k

    def _emit(self, end: int) -> list[str]:
        text = self._buf[self._from : end].strip()
        self._from = max(self._from, end)
        return [text] if text else []

    def _end_unit(self, end: int) -> list[str]:
        if self._fence:
            self._from = end
            return []
        return self._emit(end)

    def _end_table(self) -> list[str]:
        hidden, self._rows, self._hidden_rows = self._hidden_rows, 0, 0
        if not hidden:
            return []
        return [f"And {hidden} more row{'s' if hidden > 1 else ''}."]


def _word_before(buf: str, j: int) -> str:
    """The word that a dot at `j` closes, lower case, openers stripped ("(e.g" -> "e.g")."""
    k = j
    while k > 0 and j - k < 24 and not buf[k - 1].isspace():
        k -= 1
    return buf[k:j].lstrip(OPENERS).lower()


def _next_significant(buf: str, k: int, final: bool) -> str:
    """The first non-space character from `k`; "" when a blank line or the end comes first."""
    newlines = 0
    n = len(buf)
    while k < n:
        c = buf[k]
        if c == "\n":
            newlines += 1
            if newlines == 2:
                return ""
        elif not c.isspace():
            return c
        k += 1
    if final:
        return ""
    raise _Wait
