"""A whole generation gathered per choice: the common ground of every dialect's whole answer."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import AsyncIterator, Dict, List, Optional, Tuple

from ..deltas import ChoiceDelta, Generation, Item, Usage
from ..protocol import TokenLogprob


@dataclass
class GatheredCall:
    """One tool call of a choice, its argument pieces joined."""

    id: str
    name: str
    arguments: str = ""


@dataclass
class GatheredChoice:
    """Everything one choice produced."""

    index: int
    content: List[str] = field(default_factory=list)
    reasoning: List[str] = field(default_factory=list)
    calls: Dict[int, GatheredCall] = field(default_factory=dict)
    logprobs: List[TokenLogprob] = field(default_factory=list)
    finish_reason: Optional[str] = None

    def add(self, delta: ChoiceDelta) -> None:
        if delta.content:
            self.content.append(delta.content)
        if delta.reasoning:
            self.reasoning.append(delta.reasoning)
        for piece in delta.tool_calls:
            call = self.calls.get(piece.index)
            if call is None:
                call = self.calls[piece.index] = GatheredCall(piece.id or "", piece.name or "")
            elif piece.name and not call.name:
                call.name = piece.name
            call.arguments += piece.arguments
        self.logprobs.extend(delta.logprobs)
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason

    @property
    def text(self) -> str:
        return "".join(self.content)

    @property
    def thinking(self) -> Optional[str]:
        return "".join(self.reasoning) if self.reasoning else None

    @property
    def tool_calls(self) -> List[GatheredCall]:
        return [self.calls[i] for i in sorted(self.calls)]


async def gather(gen: Generation) -> Tuple[List[GatheredChoice], Usage]:
    """Run ``gen`` to its end; every choice's output and the usage."""
    choices = [GatheredChoice(i) for i in range(gen.n_choices)]
    usage = Usage()
    async with contextlib.aclosing(gen.deltas) as items:
        async for item in items:
            if isinstance(item, Usage):
                usage = item
            else:
                choices[item.index].add(item)
    return choices, usage


_NOTHING = object()


async def _chain(first: object, items: AsyncIterator[Item]) -> AsyncIterator[Item]:
    if first is _NOTHING:
        return
    yield first
    async for item in items:
        yield item


async def started(items: AsyncIterator[Item]) -> AsyncIterator[Item]:
    """``items`` with its first item already pulled: await this before sending anything,
    so the work has begun (and can be aborted by its id) once the client hears of it."""
    try:
        first = await items.__anext__()
    except StopAsyncIteration:
        first = _NOTHING
    return _chain(first, items)
