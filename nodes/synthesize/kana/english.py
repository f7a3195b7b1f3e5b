"""English words, acronyms and code identifiers read as Japanese developers say them, in katakana.

One span of Latin text (a word, `snake_case`, `CamelCase`, `setup.py`, `src/bus/node.py`, a URL,
`v2.3.1`, "Claude Code") goes in; katakana comes out, its parts separated by spaces. Order of
trust for each word: the software dictionary (`words.tsv`), then capitals spelled with the
Japanese letter names (API → エーピーアイ), then `e2k`'s character model for a pronounceable word,
else the letters spelled out (npm-like strings e2k's n-gram scorer finds unpronounceable).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

WORDS_PATH = Path(__file__).with_name("words.tsv")
CACHE_WORDS = 20_000  # e2k results kept; e2k costs ~3 ms a word

LETTERS = {
    "a": "エー", "b": "ビー", "c": "シー", "d": "ディー", "e": "イー", "f": "エフ", "g": "ジー",
    "h": "エイチ", "i": "アイ", "j": "ジェー", "k": "ケー", "l": "エル", "m": "エム", "n": "エヌ",
    "o": "オー", "p": "ピー", "q": "キュー", "r": "アール", "s": "エス", "t": "ティー", "u": "ユー",
    "v": "ブイ", "w": "ダブリュー", "x": "エックス", "y": "ワイ", "z": "ゼット",
}  # fmt: skip

# How the separators inside an identifier or path are said; "" = a word boundary, not spoken.
SEPARATORS = {
    "/": "スラッシュ", ".": "ドット", ":": "コロン", "@": "アット", "#": "シャープ", "+": "プラス",
    "~": "チルダ", "=": "イコール", "_": "", "-": "",
}  # fmt: skip
DIGITS = ("ゼロ", "イチ", "ニ", "サン", "ヨン", "ゴ", "ロク", "ナナ", "ハチ", "キュー")
# A lone digit right after letters is said in English: S3 エススリー, /api/v1 ブイワン.
ENGLISH_DIGITS = (
    "ゼロ",
    "ワン",
    "ツー",
    "スリー",
    "フォー",
    "ファイブ",
    "シックス",
    "セブン",
    "エイト",
    "ナイン",
)

# One span: a URL, a bare version number, or a run of identifier characters holding a letter,
# possibly several joined by single spaces ("Claude Code", "Python 3.11").
_WORD = r"[A-Za-z0-9_~@#+/.\\-]*[A-Za-z][A-Za-z0-9_.:~@#+/\\=-]*"
_PART = rf"(?:https?://[^\s、。，「」（）]+|{_WORD}|v?\d+(?:\.\d+){{2,}})"
SPAN_RE = re.compile(rf"--?{_WORD}|{_PART}(?: (?:{_PART}|\d+(?:\.\d+)*(?![\d,])))*")
# Identifier pieces: CamelCase humps, runs of capitals before a hump (HTTPServer), digits.
_PIECE_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_SPLIT_RE = re.compile(r"(\.\.?/|[/.:@#+~=_-])")


def find_spans(text: str) -> list[tuple[int, int]]:
    """Where the Latin spans are; a trailing '.', ':' or ',' is sentence punctuation, left outside."""
    spans = []
    for m in SPAN_RE.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in ".:,":
            end -= 1
        if end > m.start():
            spans.append((m.start(), end))
    return spans


def load_words(path: Path) -> dict[str, str]:
    """WORD<TAB>KATAKANA lines; '#' starts a comment line. A malformed line is an error, not a skip."""
    words: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        key, sep, kana = line.partition("\t")
        if not sep or not key or not kana or "\t" in kana:
            raise ValueError(f"{path}:{n}: expected WORD<TAB>KATAKANA, got {line!r}")
        words[key] = kana.strip()
    return words


def spell(letters: str) -> str:
    """Letters by their Japanese names: 'API' → エーピーアイ."""
    return "".join(LETTERS.get(c, "") for c in letters.lower())


def integer_kana(digits: str, number: Callable[[str], str]) -> str:
    """A digit run as a number; leading zeros (and 0 itself) digit by digit."""
    if digits.startswith("0"):
        return "".join(DIGITS[int(d)] for d in digits)
    return number(digits)


class EnglishReader:
    """Reads Latin spans as katakana. Thread-safe: e2k runs under a lock, results are cached."""

    def __init__(self, words: dict[str, str], number: Callable[[str], str]) -> None:
        import e2k  # heavy-ish (0.2 s to load its models); only the frontend needs it

        self._words = words
        self._lower = {k.lower(): v for k, v in words.items() if not k.startswith(".")}
        self._lower.update({k.lower(): v for k, v in words.items() if k.lower() == k})
        self._number = number
        self._c2k = e2k.C2K()
        self._ngram = e2k.NGram()
        self._lock = threading.Lock()
        self._cache: dict[str, str] = {}

    def read_span(self, span: str) -> str:
        """A whole span (see SPAN_RE): its words read one by one, joined by spaces."""
        return " ".join(p for p in (self.read_token(t) for t in span.split(" ")) if p)

    def read_token(self, token: str) -> str:
        token = token.rstrip(".:")
        if token.startswith(("http://", "https://")):
            token = token.split("://", 1)[1].rstrip("/")
        hit = self._lookup(token)
        if hit is not None:
            return hit
        if re.fullmatch(r"v?\d+(?:\.\d+)+", token):
            return self._version(token)
        parts: list[str] = []
        pieces = [p for p in _SPLIT_RE.split(token) if p]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if piece in ("./", "../"):
                continue  # relative-path prefixes are not spoken
            if (
                piece == "."
                and 0 < i < len(pieces) - 1
                and pieces[i - 1][-1:].isdigit()
                and pieces[i + 1][:1].isdigit()
            ):
                parts.append("テン")  # a decimal inside a name: Qwen2.5
                continue
            if piece in SEPARATORS:
                if piece == "-" and (last or all(p == "-" for p in pieces[: i + 1])):
                    parts.append("ハイフン")  # a flag: --verbose
                elif piece == "." and i == 0:
                    parts.append("ドット")  # a dotfile: .env
                elif piece not in "_-" and not (piece == "/" and last):
                    parts.append(SEPARATORS[piece])
                continue
            if i > 0 and last and pieces[i - 1] == "." and (ext := self._words.get("." + piece.lower())):
                parts.append(ext)
            elif (hit := self._lookup(piece)) is not None:
                parts.append(hit)
            else:
                decimal = i + 2 < len(pieces) and pieces[i + 1] == "." and pieces[i + 2][:1].isdigit()
                parts.extend(self._identifier(piece, decimal))
        return " ".join(p for p in parts if p)

    def _lookup(self, word: str) -> str | None:
        if word.startswith("."):
            return None  # extension keys only count after a file name
        return self._words.get(word) if word in self._words else self._lower.get(word.lower())

    def _version(self, token: str) -> str:
        """v2.3.1 → ブイ ニ テン サン テン イチ; a two-part number is a decimal: 3.11 → サン テン イチイチ."""
        head = ["ブイ"] if token.startswith("v") else []
        nums = token.lstrip("v").split(".")
        if len(nums) == 2:
            return " ".join([*head, self._number(nums[0]), "テン", "".join(DIGITS[int(d)] for d in nums[1])])
        spoken = [integer_kana(n, self._number) if n != "0" else "ゼロ" for n in nums]
        return " ".join([*head, " テン ".join(spoken)])

    def _identifier(self, piece: str, decimal: bool = False) -> list[str]:
        """One alphanumeric run: camelCase humps and digit runs read separately. `decimal`: a
        decimal point follows, so a final digit is the integer part of a number (Qwen2.5)."""
        out: list[str] = []
        matches = list(_PIECE_RE.finditer(piece))
        for j, m in enumerate(matches):
            word = m.group()
            english = j > 0 and len(word) == 1 and not (decimal and j == len(matches) - 1)
            if word.isdigit() and english:
                out.append(ENGLISH_DIGITS[int(word)])
            elif word.isdigit():
                out.append(integer_kana(word, self._number))
            else:
                out.append(self.word(word))
        return out

    def word(self, word: str) -> str:
        """One alphabetic word: dictionary, capitals spelled, e2k, or spelled if unpronounceable."""
        hit = self._lookup(word)
        if hit is not None:
            return hit
        if len(word) == 1 or (word.isupper() and len(word) <= 5):
            return spell(word)
        with self._lock:
            cached = self._cache.get(word.lower())
            if cached is None:
                lower = word.lower()
                cached = self._c2k(lower) if self._ngram(lower) else spell(lower)
                if len(self._cache) >= CACHE_WORDS:
                    self._cache.clear()  # a long-running node meets unbounded vocabulary
                self._cache[lower] = cached
        return cached
