"""The LLM serving layer: one module per API dialect turns an engine's typed results
(:class:`~xinference.model.llm.deltas.Generation`) into that dialect's answers.

- :mod:`.openai`: ``chat.completion`` / ``text_completion``, whole and as chunks;
- :mod:`.anthropic`: Anthropic Messages (``message``, its event stream, token counts);
- :mod:`.responses`: the OpenAI Responses API (``response``, its typed event stream).

:func:`answer` and :func:`stream` are what a replica's process runs for an
:class:`~xinference.model.operations.InferenceCall` on an LLM: a dict to send as
JSON, or an async iterator of dicts (stream chunks or typed events). Every
dialect runs on every LLM engine through the same ``start_chat`` /
``start_completion`` calls, so batching, cancellation and token caps are shared.
Images in a chat (any dialect) are checked first, against the model's ``vision``
ability and the limits, and fetched when allowed (:mod:`..images`).
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any, AsyncIterator, Dict

from ...operations import Dialect, InferenceCall
from .. import images

_MODULES = {Dialect.OPENAI: "openai", Dialect.ANTHROPIC: "anthropic",
            Dialect.RESPONSES: "responses"}


def dialect_module(dialect: Dialect) -> Any:
    """The serving module of ``dialect`` (each has ``answer`` and ``stream``)."""
    return importlib.import_module(f"{__name__}.{_MODULES[Dialect(dialect)]}")


async def answer(engine: Any, call: InferenceCall) -> Dict[str, Any]:
    """The whole answer to ``call`` in its dialect."""
    call, remote = images.checked_call(engine.config, call)
    await images.fetch_images(remote)
    return await dialect_module(call.dialect).answer(engine, call)


def stream(engine: Any, call: InferenceCall) -> AsyncIterator[Dict[str, Any]]:
    """The streamed answer: validates at once (bad requests raise here), then yields events.
    Images to fetch are fetched at the first pull, before the first event."""
    call, remote = images.checked_call(engine.config, call)
    if remote:
        return _after_fetch(engine, call, remote)
    return dialect_module(call.dialect).stream(engine, call)


async def _after_fetch(engine: Any, call: InferenceCall,
                       remote: list) -> AsyncIterator[Dict[str, Any]]:
    await images.fetch_images(remote)
    events = dialect_module(call.dialect).stream(engine, call)
    async with contextlib.aclosing(events):
        async for event in events:
            yield event
