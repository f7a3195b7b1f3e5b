"""Markdown units -> what a person would say; and `SentenceStream`, what ingest sends per stream.

The segmenter (nodes/ingest/text/segmenter.py) cuts streamed markdown into units that keep their markup, so
block structure can decide the cuts; `to_speakable` then works on one finished unit at a time,
which is why it can be a plain function of a short string:
- block markers go (`#`, `>`, `- `, `1. `, task boxes); a table row is read as its cells joined by
  commas; a rule or separator row says nothing;
- a code fence line becomes a short placeholder ("Here is some Python code.") or nothing
  (`code_blocks = "drop"`); the segmenter has already dropped the body;
- links say their text, images say nothing, URLs say their host ("github.com"), HTML tags go;
- emphasis marks go, the words stay; emoji go; arrows read "to" (", then" before a clause),
  `v2.3.1` reads "version 2.3.1";
- inline code keeps its content (identifiers, commands: the translator keeps them as they are),
  except a file path, which reads as its file name, and code too long to say (`max_inline_code`),
  which reads "this code";
- e.g. / i.e. / etc. / vs. are said in words; numbers are left for the translator and the
  Japanese reading frontend.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from bus.messages import MAX_SENTENCE_CHARS
from nodes.ingest.text.segmenter import (
    DEFAULT_IDLE_FLUSH_S,
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_TABLE_ROWS,
    Segmenter,
)

CODE_LANGS = {
    "py": "Python", "python": "Python", "js": "JavaScript", "javascript": "JavaScript", "jsx": "JavaScript",
    "ts": "TypeScript", "typescript": "TypeScript", "tsx": "TypeScript", "sh": "shell", "bash": "shell",
    "zsh": "shell", "shell": "shell", "console": "shell", "json": "JSON", "yaml": "YAML", "yml": "YAML",
    "toml": "TOML", "rust": "Rust", "rs": "Rust", "go": "Go", "c": "C", "cpp": "C++", "c++": "C++",
    "java": "Java", "ruby": "Ruby", "rb": "Ruby", "sql": "SQL", "html": "HTML", "css": "CSS",
    "diff": "diff", "markdown": "Markdown", "md": "Markdown", "dockerfile": "Dockerfile", "make": "Makefile",
    "makefile": "Makefile",
}  # fmt: skip


@dataclass(frozen=True)
class SpeakOptions:
    """How markdown is read; every field is a key of the config's [ingest] section."""

    code_blocks: str = "say"  # "say": a spoken placeholder; "drop": nothing
    code_block_text: str = "Here is a code block."
    code_block_lang_text: str = "Here is some {lang} code."  # when the fence names a language
    urls: str = "host"  # "host": github.com; "keep": the whole URL; "drop": nothing
    paths: str = "name"  # "name": src/bus/node.py reads node.py; "keep": as written
    max_inline_code: int = 40  # longer inline code reads "this code"
    expand_abbreviations: bool = True  # e.g. -> for example, i.e. -> that is, etc. -> and so on

    def __post_init__(self) -> None:
        for name, allowed in (
            ("code_blocks", ("say", "drop")),
            ("urls", ("host", "keep", "drop")),
            ("paths", ("name", "keep")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"[ingest] {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> SpeakOptions:
        known = {f.name for f in fields(cls)}
        opts = {k: v for k, v in section.items() if k in known}
        for key, value in opts.items():
            expected = type(getattr(cls, key))
            if type(value) is not expected:
                raise ValueError(f"[ingest] {key} must be {expected.__name__}, got {value!r}")
        return cls(**opts)


DEFAULT_OPTIONS = SpeakOptions()
MAX_SENTENCE_CHARS_SETTING = 1000  # [ingest] max_sentence_chars at most: its spoken form must fit a message

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`{]*)")
_FENCE_LINE = re.compile(r"(?:`{3,}[^`\n]*|~{3,}[^\n]*)")
_BLOCK_MARKERS = re.compile(
    r"^[ \t]*(?:(?:>[ \t]?)+)?(?:#{1,6}[ \t]+|[-*+][ \t]+|\d{1,9}[.)][ \t]+)?(?:\[[ xX]\][ \t]+)?", re.M
)
_HEADING_CLOSE = re.compile(r"[ \t]+#+[ \t]*$", re.M)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^>\s]+)>")
_URL = re.compile(
    r"\b(?:https?|ftp)://[^\s<>\"'`)\]]+|\bwww\.[a-z0-9-]+(?:\.[a-z0-9-]+)+[^\s<>\"'`)\]]*", re.I
)
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])")
_ITALIC_UNDER = re.compile(r"(?<![\w_])_(?=\S)([^_]+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"~~(.+?)~~")
_STRAY_MARKS = re.compile(r"(?<![\w*])\*{1,3}|\*{1,3}(?![\w*])|(?<!\w)_{2,3}|_{2,3}(?!\w)|~~")
_PATH = re.compile(
    r"(?<![\w/.:@-])(?:~|\.{1,2})?/?(?:[\w@.+-]+/)+([\w@+-][\w@.+-]*)?"
    r"(?=$|[\s,;:!?)\]'\"]|\.(?:\s|$))"
)
_VERSION = re.compile(r"(?<![\w.])v(\d+(?:\.\d+)+(?:[-+][\w.]+)?)\b")
_ARROW = re.compile(r"[ \t]*(?:→|->|=>|⟶)[ \t]*")
_APPROX = re.compile(r"(?<![\w~])~(?=\d)")
_AMP = re.compile(r"(?<=\w) & (?=\w)")
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff\ufe0f\u200d\u20e3\U000e0020-\U000e007f]"
)
_ABBREVIATIONS = (
    (re.compile(r"\be\.g\.(?:,)?", re.I), "for example,"),
    (re.compile(r"\bi\.e\.(?:,)?", re.I), "that is,"),
    (re.compile(r"\betc\.(?=\s*$)"), "and so on."),
    (re.compile(r"\betc\.?"), "and so on"),
    (re.compile(r"\bvs\.?(?=\s)"), "versus"),
)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?)\]。、！？])")
_LEADING_JUNK = re.compile(r"^[\s,.;:\-–—|]+")
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]")
_CODE_TOKEN = "\ue000"  # stands for a code span while the text around it is rewritten


def code_placeholder(fence_line: str, options: SpeakOptions = DEFAULT_OPTIONS) -> str:
    """What is said where a fenced code block starts."""
    if options.code_blocks == "drop":
        return ""
    m = _FENCE.match(fence_line)
    lang = CODE_LANGS.get(m.group(2).lower(), "") if m else ""
    return options.code_block_lang_text.format(lang=lang) if lang else options.code_block_text


def to_speakable(unit: str, options: SpeakOptions = DEFAULT_OPTIONS) -> str:
    """One markdown unit from the segmenter as plain speakable text; "" when there is nothing to say."""
    text = unit.strip()
    if not text:
        return ""
    if _FENCE_LINE.fullmatch(text):
        return code_placeholder(text, options)
    if text.startswith("|"):
        text = ", ".join(c for c in (cell.strip() for cell in re.split(r"(?<!\\)\|", text)) if c)
        text = text.replace("\\|", "|")
    else:
        text = _BLOCK_MARKERS.sub("", text)
        text = _HEADING_CLOSE.sub("", text)
    codes: list[str] = []

    def keep_code(m: re.Match[str]) -> str:
        codes.append(_say_code(m.group(2).strip(), options))
        return _CODE_TOKEN

    text = _CODE_SPAN.sub(keep_code, text)
    text = _IMAGE.sub("", text)
    text = _LINK.sub(
        lambda m: _say_url(m.group(1), options) if _URL.fullmatch(m.group(1)) else m.group(1), text
    )
    text = _REF_LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(lambda m: _say_url(m.group(1), options), text)
    text = _URL.sub(lambda m: _say_url(_strip_punct(m.group(0)), options) + _trailing_punct(m.group(0)), text)
    text = _HTML_TAG.sub(" ", text)
    text = _STRIKE.sub(r"\1", text)
    for _ in range(2):  # nested emphasis: ***both*** and **bold _italic_**
        text = _BOLD.sub(r"\2", text)
        text = _ITALIC_STAR.sub(r"\1", text)
        text = _ITALIC_UNDER.sub(r"\1", text)
    text = _STRAY_MARKS.sub("", text)
    text = _say_words(text, options)
    text = _EMOJI.sub("", text)
    text = re.sub(_CODE_TOKEN, lambda _m: codes.pop(0), text)
    text = " ".join(text.split())
    text = _balance(text)
    text = _EMPTY_BRACKETS.sub("", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _LEADING_JUNK.sub("", text).strip()
    return text if any(c.isalnum() for c in text) else ""


def _say_words(text: str, options: SpeakOptions) -> str:
    """Paths, versions, arrows and symbols as they are said (outside code spans)."""
    if options.paths == "name":
        text = _PATH.sub(_path_name, text)
    text = _VERSION.sub(_say_version, text)
    text = _ARROW.sub(_say_arrow, text)
    text = _APPROX.sub("about ", text)
    text = _AMP.sub(" and ", text)
    if options.expand_abbreviations:
        for pattern, words in _ABBREVIATIONS:
            text = pattern.sub(words, text)
        text = text.replace(",,", ",")
    return text


_SAYS_VERSION = re.compile(r"(?:\b(?:version|versions|ver|release|rev|revision)\.?|\bv\.)\s*$", re.I)


def _say_version(m: re.Match[str]) -> str:
    """ "v2.3.1" reads "version 2.3.1", unless the word before already says it ("Version v2.3.1")."""
    return m.group(1) if _SAYS_VERSION.search(m.string, 0, m.start()) else f"version {m.group(1)}"


def _say_arrow(m: re.Match[str]) -> str:
    """ "A → B" reads "A to B"; "restart it → it reconnects" (a clause follows) reads ", then"."""
    rest = re.split(r"[,.;:!?)]", m.string[m.end() :], maxsplit=1)[0]
    return ", then " if len(rest.split()) >= 3 else " to "


def _say_code(code: str, options: SpeakOptions) -> str:
    if _URL.fullmatch(code):
        return _say_url(code, options)
    if options.paths == "name" and "/" in code and " " not in code:
        named = _PATH.sub(_path_name, code)
        if named != code:
            return named
    return code if len(code) <= options.max_inline_code else "this code"


def _say_url(url: str, options: SpeakOptions) -> str:
    if options.urls == "keep":
        return url
    if options.urls == "drop":
        return ""
    url = url.rstrip(".,;:!?")
    parts = urlsplit(url if "://" in url else "http://" + url)
    host = parts.hostname or ""
    if not _is_local(host):
        return host.removeprefix("www.")
    # A local server: which one is what the listener needs, so its port, and a short path.
    try:
        port = parts.port
    except ValueError:
        port = None
    said = host if port is None else f"{host} port {port}"
    path = parts.path.strip("/")
    if path and len(path) <= MAX_LOCAL_PATH_CHARS and path.count("/") < 2:
        said += f", path {' slash '.join(path.split('/'))}"  # words: no path rule shortens them
    return said


MAX_LOCAL_PATH_CHARS = 24  # a local URL's path is said when it is this short (and 1-2 segments)


def _is_local(host: str) -> bool:
    """localhost, a loopback or private address, or a .local/.internal/.test name."""
    if host in ("localhost", "0.0.0.0") or host.endswith((".localhost", ".local", ".internal", ".test")):
        return True
    try:
        import ipaddress

        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_unspecified


def _strip_punct(url: str) -> str:
    return url.rstrip(".,;:!?")


def _trailing_punct(url: str) -> str:
    return url[len(_strip_punct(url)) :]


def _path_name(m: re.Match[str]) -> str:
    """A path reads as its last part, when it is clearly a path (a file name, or 2+ slashes)."""
    whole = m.group(0)
    name = m.group(1) or whole.rstrip("/").rsplit("/", 1)[-1]
    is_path = (m.group(1) and "." in m.group(1).strip(".")) or whole.count("/") >= 2 or whole[0] in "~./"
    return name if is_path and name else whole


def _balance(text: str) -> str:
    """Drop brackets and quotes left unpaired by a sentence cut ("(This is one." -> "This is one.")."""
    drop: set[int] = set()
    for open_, close in ("()", "[]", "“”", "「」"):
        stack: list[int] = []
        for i, c in enumerate(text):
            if c == open_:
                stack.append(i)
            elif c == close:
                if stack:
                    stack.pop()
                else:
                    drop.add(i)
        drop.update(stack)
    quotes = [i for i, c in enumerate(text) if c == '"']
    if len(quotes) % 2:
        drop.update(quotes)
    return "".join(c for i, c in enumerate(text) if i not in drop) if drop else text


class SentenceStream:
    """One stream's text -> the sentences ingest sends: `Segmenter` units through `to_speakable`.

    Ingest keeps one per stream and `stream-tts segment` uses the same class, so what `segment`
    prints is what ingest sends. Units that say nothing (a rule, a separator row, a dropped code
    fence) are left out."""

    def __init__(
        self,
        options: SpeakOptions = DEFAULT_OPTIONS,
        idle_flush_s: float | None = DEFAULT_IDLE_FLUSH_S,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        max_table_rows: int = DEFAULT_MAX_TABLE_ROWS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.options = options
        kwargs: dict[str, Any] = {"max_chars": max_chars, "max_table_rows": max_table_rows}
        if clock is not None:
            kwargs["clock"] = clock
        self.segmenter = Segmenter(idle_flush_s, **kwargs)

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> SentenceStream:
        """From the config's [ingest] section: SpeakOptions keys plus idle_flush_s, max_sentence_chars,
        max_table_rows."""
        idle = section.get("idle_flush_s", DEFAULT_IDLE_FLUSH_S)
        max_chars = int(section.get("max_sentence_chars", DEFAULT_MAX_CHARS))
        if not 40 <= max_chars <= MAX_SENTENCE_CHARS_SETTING:
            raise ValueError(f"max_sentence_chars must be 40..{MAX_SENTENCE_CHARS_SETTING}, got {max_chars}")
        return cls(
            SpeakOptions.from_section(section),
            None if idle in (None, 0) else float(idle),
            max_chars=max_chars,
            max_table_rows=int(section.get("max_table_rows", DEFAULT_MAX_TABLE_ROWS)),
        )

    def feed(self, text: str) -> list[str]:
        return self._say(self.segmenter.feed(text))

    def flush(self) -> list[str]:
        return self._say(self.segmenter.flush())

    def poll(self, now: float | None = None) -> list[str]:
        return self._say(self.segmenter.poll(now))

    @property
    def pending(self) -> str:
        return self.segmenter.pending

    def _say(self, units: list[str]) -> list[str]:
        spoken = [s for s in (to_speakable(u, self.options) for u in units) if s]
        return [piece for s in spoken for piece in within(s, MAX_SENTENCE_CHARS)]


def within(sentence: str, limit: int) -> list[str]:
    """The sentence in pieces of at most `limit` characters, cut at a space where there is one: the
    spoken form may outgrow the source (an arrow says ", then") past what a message may carry."""
    pieces = []
    while len(sentence) > limit:
        cut = sentence.rfind(" ", 0, limit + 1)
        cut = cut if cut > limit // 2 else limit
        pieces.append(sentence[:cut].rstrip())
        sentence = sentence[cut:].lstrip()
    return [*pieces, sentence] if sentence else pieces
