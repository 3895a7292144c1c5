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
"""

from __future__ import annotations

import importlib
from typing import Any, AsyncIterator, Dict

from ...operations import Dialect, InferenceCall

_MODULES = {Dialect.OPENAI: "openai", Dialect.ANTHROPIC: "anthropic",
            Dialect.RESPONSES: "responses"}


def dialect_module(dialect: Dialect) -> Any:
    """The serving module of ``dialect`` (each has ``answer`` and ``stream``)."""
    return importlib.import_module(f"{__name__}.{_MODULES[Dialect(dialect)]}")


async def answer(engine: Any, call: InferenceCall) -> Dict[str, Any]:
    """The whole answer to ``call`` in its dialect."""
    return await dialect_module(call.dialect).answer(engine, call)


def stream(engine: Any, call: InferenceCall) -> AsyncIterator[Dict[str, Any]]:
    """The streamed answer: validates at once (bad requests raise here), then yields events."""
    return dialect_module(call.dialect).stream(engine, call)
