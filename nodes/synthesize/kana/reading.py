"""The Japanese reading frontend: translated Japanese in, the katakana CosyVoice should say out.

CosyVoice reads kanji with Chinese sounds and spells Latin letters out, so it gets kana only:
kanji read in context by OpenJTalk (pyopenjtalk-plus), particles as pronounced, numbers with
their units, English words and identifiers as Japanese developers say them (nodes/synthesize/kana/english.py),
and the punctuation that marks pauses (、。？！).

Why katakana, not hiragana: katakana is a purely phonetic script with no second reading, the
script Japanese already uses for most words of this domain (ファイル, コミット), and it carries
OpenJTalk's pronunciation field as is: the long-vowel mark ー says exactly which vowels are long
(トーキョー), where hiragana spelling (とうきょう) leaves o-u against ō to the model. Particles
come out as said (ワ, エ, オ), so nothing is left for CosyVoice's text model to guess. Not measured
on a real CosyVoice2 checkpoint here (none can be fetched); a hiragana variant is one
str.translate away if listening tests prefer it.

Pipeline (`KanaFrontend.to_kana`): NFKC → numbers with units, signs and ranges rewritten in
Japanese → Latin spans cut out and replaced by a placeholder noun → OpenJTalk on the rest, so
particles after an English word are still parsed as particles → tokens to kana, placeholders
back to the spans' readings → pauses tidied.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from nodes.synthesize.kana.english import WORDS_PATH, EnglishReader, find_spans, load_words

# A noun OpenJTalk reads as one token and never merges with its neighbours (checked with
# は/へ/を/線/型/順 after it); each Latin span stands in for one while the sentence is parsed.
PLACEHOLDER = "ＡＢＣ"

# After a number: ASCII unit -> Japanese, so OpenJTalk applies its sound changes (10分 ジュップン).
UNITS = {
    "KB": "キロバイト", "kB": "キロバイト", "MB": "メガバイト", "GB": "ギガバイト", "TB": "テラバイト",
    "KiB": "キビバイト", "MiB": "メビバイト", "GiB": "ギビバイト", "bit": "ビット", "bits": "ビット",
    "ms": "ミリ秒", "us": "マイクロ秒", "µs": "マイクロ秒", "μs": "マイクロ秒", "ns": "ナノ秒",
    "s": "秒", "sec": "秒", "secs": "秒", "min": "分", "mins": "分", "h": "時間", "hr": "時間",
    "Hz": "ヘルツ", "kHz": "キロヘルツ", "MHz": "メガヘルツ", "GHz": "ギガヘルツ",
    "px": "ピクセル", "fps": "エフピーエス", "x": "倍", "X": "倍", "dB": "デシベル",
    "mm": "ミリ", "cm": "センチ", "km": "キロ", "kg": "キロ", "W": "ワット",
}  # fmt: skip
MULTIPLIERS = {"k": 1000, "K": 1000, "M": 1_000_000}
_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
_UNIT_RE = re.compile(
    rf"(?<![A-Za-z0-9_.])({_NUM}) ?({'|'.join(sorted([*UNITS, *MULTIPLIERS], key=len, reverse=True))})"
    r"(?![A-Za-z0-9_])"
)
_DATE_RE = re.compile(r"(?<![\d.-])(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?![\d.-])")
_TIME_RE = re.compile(r"(?<![\d:.])(\d{1,2}):(\d{2})(?![\d:])")
_MINUS_RE = re.compile(r"(?<![A-Za-z0-9_.)])-(?=\d)")
_RANGE_RE = re.compile(r"(\d) ?[~〜] ?(?=\d)")
_NUMBER_SIGN_RE = re.compile(r"#(\d+)")
_COMMA_RE = re.compile(r"(?<!\d),|,(?!\d{3})")
_PERIOD_RE = re.compile(r"(?<!\d)\.|\.(?!\d)")
_ASCII_PUNCT = str.maketrans({"?": "？", "!": "！", ":": "：", ";": "；", "(": "（", ")": "）"})

# Nouns whose general-text reading is wrong in a narration about code (空 sky → empty, 行 row → line).
DOMAIN_READINGS = {
    "行": "ギョー", "各行": "カクギョー", "一行": "イチギョー", "空": "カラ", "空文字": "カラモジ",
    "空行": "カラギョー",
}  # fmt: skip
STOPS = "。？！"
PAUSE = "、"
# Symbols that mark a pause; symbols dropped silently. Others keep OpenJTalk's reading (＋ タス).
PAUSE_SYMBOLS = set("、，,：；（）()[]［］【】〔〕…‥")
STOP_SYMBOLS = {"。": "。", "．": "。", "？": "？", "！": "！"}
_PAUSES_RE = re.compile(r"[、。？！]{2,}")


def _pron(node: Mapping[str, Any]) -> str:
    """A token's pronunciation: OpenJTalk's pron field, accent marks dropped, を said as オ."""
    pron = str(node["pron"]).replace("’", "")
    if node["pos"] == "助詞" and pron == "ヲ":
        return "オ"
    if node["pos"] == "名詞" and node["string"] in DOMAIN_READINGS:
        return DOMAIN_READINGS[str(node["string"])]
    return pron


def _tidy_pauses(match: re.Match[str]) -> str:
    """A run like 、。 becomes its strongest mark."""
    run = match.group()
    return next((c for c in "？！。" if c in run), PAUSE)


def _clock(match: re.Match[str]) -> str:
    """10:30 → 10時30分; 10:00 → 10時."""
    hour, minute = int(match.group(1)), int(match.group(2))
    return f"{hour}時{minute}分" if minute else f"{hour}時"


def _units(match: re.Match[str]) -> str:
    number, unit = match.group(1), match.group(2)
    if unit in MULTIPLIERS:
        try:
            value = Decimal(number.replace(",", "")) * MULTIPLIERS[unit]
        except InvalidOperation:
            return match.group()
        return format(value.normalize(), "f")
    return number + UNITS[unit]


class KanaFrontend:
    """Japanese text → the katakana the synthesizer receives. `to_kana` is a pure function of its
    text, thread-safe (pyopenjtalk serialises its own calls; the English reader locks its cache),
    and fast (about a millisecond a sentence once warm)."""

    def __init__(self, words: Path | None = None) -> None:
        import pyopenjtalk  # loads the dictionary: import here so `stream-tts --help` stays light

        self._jtalk = pyopenjtalk
        self._number = lru_cache(maxsize=4096)(self._number_uncached)
        self.english = EnglishReader(load_words(words or WORDS_PATH), self._number)

    def _number_uncached(self, digits: str) -> str:
        return "".join(_pron(n) for n in self._jtalk.run_frontend(digits))

    def to_kana(self, text: str) -> str:
        text = self._normalize(text)
        spans = find_spans(text)
        readings = [self.english.read_span(text[a:b]) for a, b in spans]
        pieces, last = [], 0
        for a, b in spans:
            pieces.append(text[last:a])
            last = b
        pieces.append(text[last:])
        japanese = [self._punctuation(p) for p in pieces]
        out = self._openjtalk(PLACEHOLDER.join(japanese), readings)
        if out is None:  # OpenJTalk merged a placeholder into a neighbour: parse the pieces alone
            out = self._openjtalk(japanese[0], []) or ""
            for reading, piece in zip(readings, japanese[1:], strict=True):
                out += reading + (self._openjtalk(piece, []) or "")
        out = _PAUSES_RE.sub(_tidy_pauses, out)
        return out.lstrip(PAUSE + " ").strip()

    @staticmethod
    def _normalize(text: str) -> str:
        text = unicodedata.normalize("NFKC", text).replace("...", "…")
        text = _DATE_RE.sub(lambda m: "{}年{}月{}日".format(*map(int, m.groups())), text)
        text = _TIME_RE.sub(_clock, text)
        text = _UNIT_RE.sub(_units, text)
        text = _MINUS_RE.sub("マイナス", text)
        text = _RANGE_RE.sub(r"\1から", text)
        text = _NUMBER_SIGN_RE.sub(r"\1番", text)
        return " ".join(text.split())

    @staticmethod
    def _punctuation(piece: str) -> str:
        """ASCII prose punctuation (outside Latin spans) in its Japanese form."""
        piece = _COMMA_RE.sub("、", piece)
        piece = _PERIOD_RE.sub("。", piece)
        return piece.translate(_ASCII_PUNCT)

    def _openjtalk(self, text: str, readings: list[str]) -> str | None:
        """OpenJTalk's reading of `text`, placeholders replaced by `readings` in order; None if the
        placeholders did not come back as tokens of their own."""
        out: list[str] = []
        left = iter(readings)
        used = 0
        for node in self._jtalk.run_frontend(text):
            surface = str(node["string"])
            if surface == PLACEHOLDER:
                out.append(next(left, ""))
                used += 1
            elif PLACEHOLDER in surface:
                return None
            elif surface in STOP_SYMBOLS and node["pos"] == "記号":
                out.append(STOP_SYMBOLS[surface])
            elif surface in PAUSE_SYMBOLS or (node["pos"] == "記号" and _pron(node) == PAUSE):
                out.append(PAUSE if surface in PAUSE_SYMBOLS else "")
            elif not surface.isspace():
                out.append(_pron(node))
        return "".join(out) if used == len(readings) else None
