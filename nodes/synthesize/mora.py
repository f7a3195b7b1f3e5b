"""How long a text is to say, in mora: what the short-clause guard measures.

CosyVoice says very short Japanese inputs badly (1-3 mora texts are its worst case on public
sets), so synthesize never hands its engine a clause under a minimum: it joins it to the next.
A mora is a kana, less the small ゃゅょぁぃぅぇぉゎ that join the one before; ッ and ー count.
Kanji (when the reading frontend is off) count as two, a rough reading; Latin letters as one per
two letters; punctuation and spaces as none.
"""

from __future__ import annotations

SMALL = set("ゃゅょぁぃぅぇぉゎャュョァィゥェォヮ")


def mora_count(text: str) -> int:
    kana = latin = kanji = 0
    for ch in text:
        if ch in SMALL:
            continue
        if "\u3041" <= ch <= "\u3096" or "\u30a1" <= ch <= "\u30fa" or ch == "ー":
            kana += 1
        elif "\u4e00" <= ch <= "\u9fff":
            kanji += 1
        elif ch.isascii() and ch.isalnum():
            latin += 1
    return kana + 2 * kanji + (latin + 1) // 2
