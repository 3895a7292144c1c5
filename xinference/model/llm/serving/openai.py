"""The OpenAI dialect: ``chat.completion`` and ``text_completion`` answers, whole or as chunks.

Everything OpenAI-specific about an LLM answer is here and nowhere else: the
assistant role opening each streamed choice, ``reasoning_content``, tool-call
deltas, chat and legacy completion ``logprobs``, ``echo``, and the usage chunk
of ``stream_options.include_usage``.
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any, AsyncIterator, Dict, List, Optional

from ...operations import InferenceCall, Operation
from .. import protocol as P
from ..deltas import ChoiceDelta, Generation, ToolCallDelta, Usage
from .gather import GatheredChoice, gather, started


def usage_dict(usage: Usage) -> Dict[str, Any]:
    """OpenAI's ``usage`` object."""
    out: Dict[str, Any] = P.usage(usage.prompt_tokens, usage.completion_tokens)
    if usage.cached_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def _include_usage(request: Dict[str, Any]) -> bool:
    return bool((request.get("stream_options") or {}).get("include_usage"))


def _start(engine: Any, call: InferenceCall) -> Generation:
    if call.operation == Operation.COMPLETE:
        return engine.start_completion(call.body)
    return engine.start_chat(call.body)


async def answer(engine: Any, call: InferenceCall) -> Dict[str, Any]:
    """The whole ``chat.completion`` or ``text_completion`` for ``call``."""
    model = engine.config.model_uid
    if call.operation == Operation.COMPLETE:
        return await completion(engine.start_completion(call.body), model,
                                bool(call.body.get("echo")))
    return await chat_completion(engine.start_chat(call.body), model)


def stream(engine: Any, call: InferenceCall) -> AsyncIterator[Dict[str, Any]]:
    """The chunks of ``call``; the request is validated before this returns."""
    gen, model = _start(engine, call), engine.config.model_uid
    if call.operation == Operation.COMPLETE:
        return completion_chunks(gen, model, _include_usage(call.body), bool(call.body.get("echo")))
    return chat_chunks(gen, model, _include_usage(call.body))


# ------------------------------------------------------------------------------ chat
def _call_dict(call: Any) -> Dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}


def _message(choice: GatheredChoice, with_reasoning: bool) -> Dict[str, Any]:
    calls = [_call_dict(c) for c in choice.tool_calls]
    content: Optional[str] = choice.text
    if calls:
        content = content.strip() or None
    return P.chat_message(content, choice.thinking, calls or None, with_reasoning=with_reasoning)


async def chat_completion(gen: Generation, model: str) -> Dict[str, Any]:
    """A whole ``chat.completion`` from a generation."""
    choices, usage = await gather(gen)
    out = [P.chat_choice(c.index, _message(c, gen.reasoning), c.finish_reason or "stop",
                         P.chat_logprobs(c.logprobs) if gen.logprobs else None)
           for c in choices]
    answer_ = P.chat_completion(P.chat_id(gen.request_id), model, out, usage_dict(usage),
                                gen.created)
    answer_["system_fingerprint"] = gen.system_fingerprint
    return answer_


def _tool_deltas(piece: ToolCallDelta) -> List[Dict[str, Any]]:
    """As OpenAI streams a call: a head with id, name and no arguments, then argument pieces."""
    out: List[Dict[str, Any]] = []
    if piece.id is not None or piece.name is not None:
        out.append({"index": piece.index, "id": piece.id, "type": "function",
                    "function": {"name": piece.name or "", "arguments": ""}})
    if piece.arguments:
        out.append({"index": piece.index, "function": {"arguments": piece.arguments}})
    return out


def openai_deltas(delta: ChoiceDelta) -> List[Dict[str, Any]]:
    """The ``delta`` objects OpenAI streams for one typed delta, in order."""
    out: List[Dict[str, Any]] = []
    if delta.reasoning:
        out.append({"reasoning_content": delta.reasoning})
    if delta.content:
        out.append({"content": delta.content})
    if delta.tool_calls:
        out.extend({"tool_calls": [d]} for p in delta.tool_calls for d in _tool_deltas(p))
    return out


async def chat_chunks(gen: Generation, model: str,
                      include_usage: bool = False) -> AsyncIterator[Dict[str, Any]]:
    """``chat.completion.chunk`` dicts: the role first, then each delta, the finish, the usage."""
    chunk = partial(P.chat_chunk, P.chat_id(gen.request_id), model, gen.created,
                    with_usage_field=include_usage)
    pending: List[list] = [[] for _ in range(gen.n_choices)]
    usage = Usage()

    def logprobs(i: int) -> Optional[Dict[str, Any]]:
        return P.chat_logprobs(pending[i]) if gen.logprobs and pending[i] else None

    async with contextlib.aclosing(gen.deltas) as items:
        running = await started(items)
        for i in range(gen.n_choices):
            yield chunk(i, {"role": "assistant", "content": ""})
        async for item in running:
            if isinstance(item, Usage):
                usage = item
                continue
            i = item.index
            pending[i] += item.logprobs
            for delta in openai_deltas(item):
                yield chunk(i, delta, logprobs=logprobs(i))
                pending[i] = []
            if item.finish_reason:
                yield chunk(i, {}, finish_reason=item.finish_reason, logprobs=logprobs(i))
                pending[i] = []
    if include_usage:
        yield P.chat_usage_chunk(P.chat_id(gen.request_id), model, gen.created, usage_dict(usage))


# ------------------------------------------------------------------------ completions
def _head(gen: Generation, index: int, echo: bool) -> str:
    return gen.prompts[index // gen.n] if echo and gen.prompts else ""


async def completion(gen: Generation, model: str, echo: bool = False) -> Dict[str, Any]:
    """A whole ``text_completion`` from a generation (``echo`` puts each prompt first)."""
    choices, usage = await gather(gen)
    out = []
    for c in choices:
        head = _head(gen, c.index, echo)
        lps = P.completion_logprobs(c.logprobs, len(head)) if gen.logprobs else None
        out.append(P.completion_choice(c.index, head + c.text, c.finish_reason or "stop", lps))
    return P.completion(P.completion_id(gen.request_id), model, out, usage_dict(usage),
                        gen.created)


async def completion_chunks(gen: Generation, model: str, include_usage: bool = False,
                            echo: bool = False) -> AsyncIterator[Dict[str, Any]]:
    """Streamed ``text_completion`` chunks, one choice each, then the usage chunk if asked."""
    id_ = P.completion_id(gen.request_id)
    offsets = [0] * gen.n_choices
    usage = Usage()
    for i in range(gen.n_choices if echo else 0):
        head = _head(gen, i, echo)
        offsets[i] = len(head)
        yield P.completion(id_, model, [P.completion_choice(i, head, None)], None, gen.created)
    async with contextlib.aclosing(gen.deltas) as items:
        async for item in items:
            if isinstance(item, Usage):
                usage = item
                continue
            lps = None
            if gen.logprobs and item.logprobs:
                lps = P.completion_logprobs(item.logprobs, offsets[item.index])
            offsets[item.index] += len(item.content)
            if item.content or lps or item.finish_reason:
                choice = P.completion_choice(item.index, item.content, item.finish_reason, lps)
                yield P.completion(id_, model, [choice], None, gen.created)
    if include_usage:
        yield P.completion(id_, model, [], usage_dict(usage), gen.created)
