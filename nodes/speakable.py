"""Markdown -> text a person would say (first cut; deepened next)."""

from __future__ import annotations

import re

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MARKS = re.compile(r"(\*\*|__|\*|`|^#+\s*|^\s*[-*+]\s+|^\s*\d+[.)]\s+)", re.M)


def to_speakable(text: str) -> str:
    """One sentence of markdown as plain speakable English ("" when nothing is left to say)."""
    if text.lstrip().startswith(("```", "~~~")):
        return ""
    text = _LINK.sub(r"\1", text)
    text = _MARKS.sub("", text)
    text = " ".join(text.split())
    return text if any(c.isalnum() for c in text) else ""
