"""The text of one sentence cut into what CosyVoice v1 says at once.

v1's LM reads a whole text before its first speech token, so it cannot take text as it streams
in (CosyVoice2's bistream): each utterance is the text that is there when it starts. The first
one is the first clause translate sent; the next one is every clause that came meanwhile (up to
`max_tokens` text tokens, cut at punctuation past that), so the first chunk never waits for the
rest of the sentence and later clauses are said together, with one prosody, when they can be.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator

from nodes.synthesize.cosyvoice.engine import speakable, split_text
from nodes.synthesize.cosyvoice.stream import Clock
from nodes.synthesize.engine import TextFeed


class ClauseSource:
    """Text pieces in (a TextFeed as clauses arrive, or any iterable), utterance texts out."""

    def __init__(
        self, pieces: Iterable[str], count: Callable[[str], int], max_tokens: int, clock: Clock
    ) -> None:
        self._feed = pieces if isinstance(pieces, TextFeed) else None
        self._iter: Iterator[str] = iter(()) if self._feed is not None else iter(pieces)
        self._count = count
        self._max = max_tokens
        self._clock = clock
        self._carry: deque[str] = deque()
        self._done = False
        self.texts: list[str] = []  # every piece received, as it came

    def _pull(self) -> bool:
        """One more piece into the carry (waiting for it within the deadline); False at the end."""
        if self._done:
            return False
        piece = self._feed.get(self._clock.remaining()) if self._feed is not None else next(self._iter, None)
        self._clock.check()  # a cancel ends the feed too: say so, not "the text ended"
        if piece is None:
            self._done = True
            return False
        piece = piece.replace("\n", " ")
        if piece.strip():
            self.texts.append(piece)
            self._carry.extend(split_text(piece, self._count, self._max))
        return True

    def _waiting(self) -> bool:
        """A piece can be had without waiting (an iterable's next one always can)."""
        return not self._done and (self._feed is None or self._feed.ready())

    def next_text(self) -> str | None:
        """The next utterance: waits for speakable text, then takes what else is already there,
        up to the token limit. None once the text has ended with nothing more to say."""
        text = ""
        while True:
            if not self._carry:
                if speakable(text) and not self._waiting():
                    break
                if not self._pull():
                    break
                continue
            if text and self._count(text + self._carry[0]) > self._max:
                break
            text += self._carry.popleft()
        return text if speakable(text) else None

    def at_end(self) -> bool:
        """True when it is known, without waiting, that nothing speakable follows."""
        while not any(speakable(t) for t in self._carry) and self._waiting():
            self._pull()
        return self._done and not any(speakable(t) for t in self._carry)
