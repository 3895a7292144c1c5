"""Turn generated token ids into text pieces as they arrive.

Byte-level tokenizers split multi-byte characters over several tokens, and
SentencePiece tokenizers decide a token's leading space from its neighbours,
so decoding one token at a time is wrong. :class:`IncrementalDetokenizer`
decodes a short sliding window and emits only the new, complete text.
"""

from __future__ import annotations

from typing import Callable, List, Sequence

REPLACEMENT_CHAR = "\ufffd"
_MAX_PENDING = 8


class IncrementalDetokenizer:
    """``add(token_id)`` returns the text that token completes ('' while a character is partial).

    ``decode`` maps a list of ids to text (special tokens already skipped by it).
    ``context`` (e.g. the last prompt tokens) seeds the window so the first
    generated token gets the right leading space.
    """

    def __init__(self, decode: Callable[[List[int]], str], context: Sequence[int] = ()):
        self._decode = decode
        self._ids: List[int] = list(context)
        self._prefix = 0
        self._read = len(self._ids)

    def add(self, token_id: int) -> str:
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix:self._read])
        after = self._decode(self._ids[self._prefix:])
        pending = len(self._ids) - self._read
        if after.endswith(REPLACEMENT_CHAR) and pending < _MAX_PENDING:
            return ""
        if not after.startswith(before):
            before = before.rstrip(REPLACEMENT_CHAR)
            if not after.startswith(before):
                before = ""
        self._prefix = self._read
        self._read = len(self._ids)
        self._trim()
        return after[len(before):]

    def flush(self) -> str:
        """Text of tokens still held back (an incomplete character at the very end)."""
        if self._read == len(self._ids):
            return ""
        before = self._decode(self._ids[self._prefix:self._read])
        after = self._decode(self._ids[self._prefix:])
        self._prefix = self._read = len(self._ids)
        return after[len(before):] if after.startswith(before) else after

    def _trim(self) -> None:
        if self._prefix > 64:
            self._ids = self._ids[self._prefix:]
            self._read -= self._prefix
            self._prefix = 0
