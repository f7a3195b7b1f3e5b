"""The [ingest] table: the journal's and the re-send's keys (IngestSettings), and the text-shaping
keys the sentence engine reads (nodes/ingest/text/speakable.py). Anything else is a typo: refused."""

from __future__ import annotations

from dataclasses import dataclass

from bus.config import unknown_keys
from bus.messages import MODES
from nodes.ingest.deadlines import DeadlinePolicy

# What [ingest] may hold: the text-shaping keys (SpeakOptions, SentenceStream), the pipe/hook's
# cancel_on_new_turn, and the journal's IngestSettings (below). Anything else is a typo: refused.
STREAM_KEYS = ("idle_flush_s", "max_sentence_chars", "max_table_rows", "cancel_on_new_turn")


@dataclass(frozen=True)
class IngestSettings:
    """Journal and re-send knobs; the text-shaping keys of [ingest] are SentenceStream's."""

    deadline_base_s: float = 60.0  # before anything is measured: base + per_char * len(text)
    deadline_per_char_s: float = 0.5
    deadline_margin: float = 3.0  # then: margin * quantile of measured s/char * len(text) ...
    deadline_quantile: float = 0.9
    deadline_min_s: float = 5.0  # ... within [min_s, max_s]
    deadline_max_s: float = 600.0
    max_attempts: int = 3  # sends per sentence before it is reported failed
    mode: str = "full"  # "brief": a turn's answer longer than brief_min_chars is said as a summary
    brief_min_chars: int = 400  # brief mode: a shorter answer is said in full

    @classmethod
    def from_section(cls, section: dict[str, object]) -> IngestSettings:
        if why := unknown_keys("ingest", section, ingest_keys()):
            raise ValueError(why)
        known = {k: section[k] for k in cls.__dataclass_fields__ if k in section}
        out = cls(**known)  # type: ignore[arg-type]
        if type(out.max_attempts) is not int or out.max_attempts < 1:
            raise ValueError(f"[ingest] max_attempts must be an integer >= 1, got {out.max_attempts!r}")
        out.policy().check()
        if out.mode not in MODES:
            raise ValueError(f"[ingest] mode must be one of {', '.join(MODES)}, got {out.mode!r}")
        if type(out.brief_min_chars) is not int or out.brief_min_chars < 0:
            raise ValueError(f"[ingest] brief_min_chars must be an integer >= 0, got {out.brief_min_chars!r}")
        return out

    def policy(self) -> DeadlinePolicy:
        return DeadlinePolicy(
            base_s=self.deadline_base_s,
            per_char_s=self.deadline_per_char_s,
            margin=self.deadline_margin,
            quantile=self.deadline_quantile,
            min_s=self.deadline_min_s,
            max_s=self.deadline_max_s,
        )


def ingest_keys() -> set[str]:
    from nodes.ingest.text.speakable import SpeakOptions

    return {*SpeakOptions.__dataclass_fields__, *STREAM_KEYS, *IngestSettings.__dataclass_fields__}
