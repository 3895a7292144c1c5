"""Stop strings that are never emitted, even when split across streamed pieces.

:class:`StopStringMatcher` is fed text as it is decoded. It releases only text
that cannot be the start of a stop string, so a stop string that arrives in
several pieces is caught before any of it reaches the client.
"""

from __future__ import annotations

from typing import Iterable, List, Tuple


class StopStringMatcher:
    """Streaming matcher for a set of stop strings.

    ``feed(text)`` returns ``(safe_text, stopped)``: the text that can be sent
    now and whether a stop string was found (the text after it, and the stop
    string itself, are dropped). ``flush()`` returns what was held back once
    the generation ends for another reason.
    """

    def __init__(self, stop: Iterable[str]):
        self.stop: List[str] = sorted({s for s in stop if s}, key=len, reverse=True)
        self._held = ""
        self.stopped = False
        self.matched: str = ""

    def feed(self, text: str) -> Tuple[str, bool]:
        if self.stopped:
            return "", True
        if not self.stop:
            return text, False
        buffer = self._held + text
        hit, where = "", -1
        for candidate in self.stop:
            pos = buffer.find(candidate)
            if pos != -1 and (where == -1 or pos < where):
                hit, where = candidate, pos
        if where != -1:
            self.stopped, self.matched, self._held = True, hit, ""
            return buffer[:where], True
        keep = self._partial_suffix(buffer)
        self._held = buffer[len(buffer) - keep:] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def _partial_suffix(self, buffer: str) -> int:
        """Length of the longest suffix of ``buffer`` that starts some stop string."""
        longest = 0
        for candidate in self.stop:
            for size in range(min(len(candidate) - 1, len(buffer)), longest, -1):
                if buffer.endswith(candidate[:size]):
                    longest = size
                    break
        return longest


def truncate_at_stop(text: str, stop: Iterable[str]) -> Tuple[str, bool]:
    """Whole-text form: ``text`` cut before the first stop string, and whether one was found."""
    matcher = StopStringMatcher(stop)
    head, stopped = matcher.feed(text)
    return (head if stopped else head + matcher.flush()), stopped
