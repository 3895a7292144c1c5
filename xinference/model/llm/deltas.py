"""Typed results of an LLM engine: what it generated, before any API dialect shapes it.

An engine validates a request and returns a :class:`Generation`: the request's facts
and an async iterator of :class:`ChoiceDelta` items (text, reasoning, tool-call
fragments, logprobs and, once per choice, the finish reason) ending with one
:class:`Usage`. The serving modules (:mod:`xinference.model.llm.serving`) turn a
generation into OpenAI chat or completion answers, Anthropic messages or OpenAI
responses, whole or streamed. Closing ``deltas`` early (``aclose``) stops the work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, List, Optional, Union

from .protocol import TokenLogprob

@dataclass
class ToolCallDelta:
    """A piece of one tool call. The call's first piece has ``id`` and ``name``;
    later pieces add to ``arguments`` (a JSON text, whole once the choice finished)."""

    index: int
    id: Optional[str] = None
    name: Optional[str] = None
    arguments: str = ""


@dataclass
class ChoiceDelta:
    """What one choice produced since its last delta.

    ``content`` is answer text, ``reasoning`` the model's thinking (already split out
    of the text), ``tool_calls`` fragments of the calls it makes; ``finish_reason``
    (``stop``, ``length`` or ``tool_calls``) is set on the choice's last delta, with
    ``stop_sequence`` the stop string that ended it when the engine knows which.
    """

    index: int = 0
    content: str = ""
    reasoning: str = ""
    tool_calls: List[ToolCallDelta] = field(default_factory=list)
    logprobs: List[TokenLogprob] = field(default_factory=list)
    token_ids: List[int] = field(default_factory=list)
    finish_reason: Optional[str] = None
    stop_sequence: Optional[str] = None

    @property
    def empty(self) -> bool:
        return not (self.content or self.reasoning or self.tool_calls or self.logprobs
                    or self.finish_reason)


@dataclass
class Usage:
    """Token counts of a whole request (every choice); the last item of every generation."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: Optional[int] = None
    reasoning_tokens: Optional[int] = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


Item = Union[ChoiceDelta, Usage]


@dataclass
class Generation:
    """A request an LLM engine accepted.

    ``n_choices`` choices are generated (``n`` per prompt, prompt-major); ``prompts``
    holds the completion prompts' texts (for ``echo``); ``reasoning`` tells whether
    the model can think (OpenAI answers then carry ``reasoning_content``);
    ``logprobs`` whether the request asked for them; ``prompt_tokens`` the prompt's
    size when the engine knows it before generating (the final :class:`Usage` always has it).
    """

    request_id: str
    created: int
    n_choices: int
    deltas: AsyncIterator[Item]
    n: int = 1
    prompts: List[str] = field(default_factory=list)
    reasoning: bool = False
    logprobs: bool = False
    system_fingerprint: Optional[str] = None
    prompt_tokens: Optional[int] = None

    async def aclose(self) -> None:
        """Stop the generation (its slot is freed); safe to call twice."""
        aclose = getattr(self.deltas, "aclose", None)
        if aclose is not None:
            await aclose()
