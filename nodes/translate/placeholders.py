"""Keep what must not be translated out of the model's reach: code identifiers, file names and
paths, URLs, CLI flags, versions and numbers become numbered placeholders (⟦0⟧, ⟦1⟧, ...) before
translation and are put back after, exactly as they were written.

Why ⟦n⟧: the brackets are rare in both languages, so a placeholder is never confused with real
text, and instruction-tuned models copy such opaque tokens through. Models still misbehave, so
restoring is forgiving: it accepts the look-alikes a model tends to write instead ([[0]], 【0】,
〚0〛, spaces inside), restores a placeholder the model used twice both times (Japanese often
repeats a noun where English says "it"), and reports the ones that never came back so the caller
can append them; nothing protected is silently lost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

OPEN, CLOSE = "⟦", "⟧"

# One pattern, alternatives in priority order: at a given position the first that matches wins,
# so a URL is not cut into a path, nor a call into a dotted name. Trailing sentence punctuation is
# never part of a match, and "e.g." / "a.m." (one-letter parts) are left to the model.
_SEG = r"[\w@+-]+(?:\.[\w@+-]+)*"  # a path segment: dots only between word characters
_PROTECT = re.compile(
    rf"""
      `(?P<code>[^`\n]+)`                                           # `anything in backticks`
    | (?P<url>(?:https?|ftp)://[^\s<>"'`]*[^\s<>"'`.,;:!?)\]]
            | \bwww\.[\w-]+(?:\.[\w-]+)+(?:/[^\s<>"'`]*[^\s<>"'`.,;:!?)\]])?)
    | (?P<path>(?<![\w/.])(?:~|\.{{1,2}})?/(?:{_SEG}/)*{_SEG}/?      # /etc/hosts ./run.sh ~/x
            | \b(?:{_SEG}/){{2,}}{_SEG}/?                           # a/b/c
            | \b(?:{_SEG}/)+[\w@+-]+\.[A-Za-z0-9]{{1,8}}\b)         # src/app.ts (not and/or)
    | (?P<call>\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\((?!s\))[^()\s]*\))  # foo(), obj.m(x); not file(s)
    | (?P<version>\bv?\d+(?:\.\d+){{1,3}}(?:-[0-9A-Za-z.]*[0-9A-Za-z])?\b)  # 3.11 v0.3.36 1.2-rc1
    | (?P<dotted>\b(?!(?:\w\.)+\w\b)[\w-]+(?:\.[\w-]+)+\b)          # setup.py os.path.join
    | (?P<ident>\b(?:[A-Za-z]\w*_\w*|_\w+)\b                        # snake_case _private A_B
            | \b[a-z]+(?:[A-Z][a-z0-9]*)+\b                         # camelCase
            | \b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+\b)                # PascalCase (TranslateNode)
    | (?P<flag>(?<![\w-])--?[A-Za-z][\w-]*)                         # --verbose -n
    | (?P<hash>\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{{7,40}}\b)  # commit hashes
    | (?P<number>(?<![\w.])[#$]?\d+(?:[.,]\d+)*%?(?!\w))             # 42 3.5 1,000 80% #123
    """,
    re.VERBOSE,
)

# What a model may write for placeholder n: ⟦n⟧ and its look-alikes, with stray spaces.
_RESTORE = re.compile(r"(?:⟦|\[\[|【|〚|［［)\s*(\d{1,3})\s*(?:⟧|\]\]|】|〛|］］)")


@dataclass(frozen=True)
class Protected:
    """A sentence with placeholders in it, and what each placeholder stands for."""

    text: str  # what the model sees
    originals: tuple[str, ...] = ()  # placeholder i stands for originals[i]

    @property
    def needs_translation(self) -> bool:
        """False when nothing but placeholders, punctuation and spaces is left: say it as is."""
        return bool(re.search(r"[A-Za-z]{2,}", _RESTORE.sub(" ", self.text)))


@dataclass
class Restored:
    text: str
    missing: list[str] = field(default_factory=list)  # originals the model dropped, in order
    duplicates: int = 0  # placeholders the model used more than once (all restored)


def placeholder(i: int) -> str:
    return f"{OPEN}{i}{CLOSE}"


def protect(text: str) -> Protected:
    """Replace every protected span with ⟦i⟧ (one index per occurrence, left to right)."""
    originals: list[str] = []

    def sub(m: re.Match[str]) -> str:
        originals.append(m.group("code") if m.lastgroup == "code" else m.group(0))
        return placeholder(len(originals) - 1)

    return Protected(_PROTECT.sub(sub, text), tuple(originals))


def restore(text: str, originals: Sequence[str], seen: set[int] | None = None) -> Restored:
    """Put the originals back into `text`. Pass the same `seen` set for every clause of one
    sentence: `missing` then lists the originals not seen in this text or any earlier one."""
    seen = set() if seen is None else seen
    out = Restored(text="")

    def sub(m: re.Match[str]) -> str:
        i = int(m.group(1))
        if i >= len(originals):
            return m.group(0)  # not one of ours: leave the text alone
        if i in seen:
            out.duplicates += 1
        seen.add(i)
        return originals[i]

    out.text = _RESTORE.sub(sub, text)
    out.missing = [o for i, o in enumerate(originals) if i not in seen]
    return out
