"""Reasoning output (``<think>...</think>``) split from the answer.

:class:`ReasoningParser` is fed the model's text as it streams and returns
``(reasoning_delta, content_delta)`` pairs, so reasoning goes to
``reasoning_content`` and never into ``content``. It handles tags split across
pieces, an optional leading tag (templates such as DeepSeek-R1's open the
block in the prompt: pass ``in_reasoning=True``, see
:func:`prompt_opens_reasoning`), and strips the whitespace around the block.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

DEFAULT_START_TAG = "<think>"
DEFAULT_END_TAG = "</think>"

_MAX_LEADING_SPACE = 16
_START, _REASONING, _AFTER, _CONTENT = "start", "reasoning", "after", "content"


def _partial_tag(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ReasoningParser:
    """Streaming splitter of reasoning text and answer text.

    ``feed(text) -> (reasoning, content)``; ``flush() -> (reasoning, content)`` at the
    end. ``saw_reasoning`` tells whether a reasoning block was found.
    """

    def __init__(self, start_tag: str = DEFAULT_START_TAG, end_tag: str = DEFAULT_END_TAG,
                 in_reasoning: bool = False):
        self.start_tag = start_tag
        self.end_tag = end_tag
        self._state = _REASONING if in_reasoning else _START
        self._buf = ""
        self._fresh = True
        self.saw_reasoning = in_reasoning

    def feed(self, text: str) -> Tuple[str, str]:
        self._buf += text
        reasoning, content = "", ""
        while True:
            state = self._state
            if state == _START:
                step = self._feed_start()
            elif state == _REASONING:
                step = self._feed_reasoning()
            elif state == _AFTER:
                step = self._feed_after()
            else:
                step = ("", self._buf)
                self._buf = ""
            reasoning += step[0]
            content += step[1]
            if self._state == state:
                return reasoning, content

    def flush(self) -> Tuple[str, str]:
        rest, self._buf = self._buf, ""
        if self._state == _REASONING:
            return rest.rstrip(), ""
        if self._state == _START:
            return "", rest
        return "", rest if self._state == _CONTENT else ""

    def _feed_start(self) -> Tuple[str, str]:
        stripped = self._buf.lstrip()
        if stripped.startswith(self.start_tag):
            self._buf = stripped[len(self.start_tag):]
            self._state, self.saw_reasoning = _REASONING, True
            return "", ""
        waiting = not stripped and len(self._buf) <= _MAX_LEADING_SPACE
        if waiting or (stripped and self.start_tag.startswith(stripped)):
            return "", ""
        self._state = _CONTENT
        out, self._buf = self._buf, ""
        return "", out

    def _feed_reasoning(self) -> Tuple[str, str]:
        if self._fresh:
            self._buf = self._buf.lstrip()
            if not self._buf:
                return "", ""
            self._fresh = False
        pos = self._buf.find(self.end_tag)
        if pos != -1:
            out = self._buf[:pos].rstrip()
            self._buf = self._buf[pos + len(self.end_tag):]
            self._state = _AFTER
            return out, ""
        keep = _partial_tag(self._buf, self.end_tag)
        body = self._buf[: len(self._buf) - keep]
        trailing = len(body) - len(body.rstrip())
        keep += trailing
        out = self._buf[: len(self._buf) - keep]
        self._buf = self._buf[len(self._buf) - keep:]
        return out, ""

    def _feed_after(self) -> Tuple[str, str]:
        stripped = self._buf.lstrip()
        if not stripped:
            self._buf = ""
            return "", ""
        self._state, self._buf = _CONTENT, ""
        return "", stripped


def split_reasoning(text: str, start_tag: str = DEFAULT_START_TAG, end_tag: str = DEFAULT_END_TAG,
                    in_reasoning: bool = False) -> Tuple[Optional[str], str]:
    """Whole-text form: ``(reasoning or None, content)``."""
    parser = ReasoningParser(start_tag, end_tag, in_reasoning)
    r1, c1 = parser.feed(text)
    r2, c2 = parser.flush()
    reasoning = r1 + r2
    return (reasoning if parser.saw_reasoning else None), c1 + c2


def reasoning_tags(family: Mapping[str, Any],
                   chat_template: Optional[str]) -> Optional[Tuple[str, str]]:
    """A model's reasoning tags: the family's, else <think>/</think> if its template has them."""
    start = family.get("reasoning_start_tag")
    end = family.get("reasoning_end_tag")
    if start and end:
        return start, end
    if chat_template and DEFAULT_START_TAG in chat_template and DEFAULT_END_TAG in chat_template:
        return DEFAULT_START_TAG, DEFAULT_END_TAG
    return None


def prompt_opens_reasoning(prompt: str, start_tag: str, end_tag: str) -> bool:
    """True if the rendered prompt ends inside an open reasoning block (the model continues it)."""
    tail = prompt.rstrip()
    pos = tail.rfind(start_tag)
    return pos != -1 and tail.find(end_tag, pos) == -1 and tail[pos + len(start_tag):].strip() == ""
