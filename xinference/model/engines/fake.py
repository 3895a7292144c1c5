"""A deterministic engine for control-plane tests, registered as ``fake``.

It serves every model type it is launched as (LLM, embedding, rerank) with
answers that depend only on the request, in the exact OpenAI / Xinference
shapes: chat answers ``"echo: <last user message>"``, streamed word by word;
embeddings are unit vectors derived from a hash of each input; rerank scores
by word overlap. Standard library only, so it loads in any process at once.

A forced ``tool_choice`` makes it call the named (or first) tool with
``{"input": <last user message>}``; option ``reasoning`` makes it think one
sentence first. Options (strings from the CLI are accepted): ``delay_per_token``
seconds per word, ``load_delay`` seconds spent in :meth:`load`, ``fail_on_load`` (a message:
load raises :class:`ModelLaunchError` with it), ``dimensions`` (default 8).
Other options are kept and shown by :meth:`describe`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import struct
import time
import uuid
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple

from ...errors import InvalidRequestError, ModelLaunchError, RequestAbortedError
from ..llm.deltas import ChoiceDelta, Generation, ToolCallDelta, Usage
from ..llm.tool_calls import new_tool_call_id
from ..operations import Operation
from .base import EmbeddingEngine, EngineConfig, LLMEngine, RerankEngine

_CAPABILITIES = {"llm": LLMEngine.capabilities | {Operation.COUNT_TOKENS},
                 "embedding": EmbeddingEngine.capabilities, "rerank": RerankEngine.capabilities}

_WORD = re.compile(r"\S+\s*")


def _number(options: Dict[str, Any], key: str, default: float, kind: type = float) -> Any:
    raw = options.get(key, default)
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"Option {key!r} must be a number, got {raw!r}",
                                  param=key) from None
    if value < 0:
        raise InvalidRequestError(f"Option {key!r} must not be negative, got {raw!r}", param=key)
    return value


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _words(text: str) -> List[str]:
    return re.findall(r"\w+", text.lower())


def _cut(pieces: List[str], request: Dict[str, Any]) -> Tuple[List[str], str]:
    """Pieces kept under ``stop`` and ``max_tokens``, with the finish reason."""
    stop = request.get("stop") or []
    stop = [stop] if isinstance(stop, str) else list(stop)
    text = "".join(pieces)
    cut = min((text.find(s) for s in stop if s and s in text), default=-1)
    if cut >= 0:
        kept, size = [], 0
        for piece in pieces:
            if size + len(piece) > cut:
                if cut > size:
                    kept.append(piece[:cut - size])
                return kept, "stop"
            kept.append(piece)
            size += len(piece)
    limit = request.get("max_completion_tokens") or request.get("max_tokens")
    if limit is not None and len(pieces) > int(limit):
        return pieces[:int(limit)], "length"
    return pieces, "stop"


def _prompt_texts(request: Dict[str, Any]) -> List[str]:
    prompt = request.get("prompt")
    return [prompt] if isinstance(prompt, str) else [p for p in prompt if isinstance(p, str)]


def _forced_call(request: Dict[str, Any]) -> Optional[ToolCallDelta]:
    """The call a forced ``tool_choice`` demands: the named (or first) tool, with the last
    user message as its ``input`` argument."""
    tools, choice = request.get("tools") or [], request.get("tool_choice")
    if not tools or choice in (None, "auto", "none"):
        return None
    name = ((choice.get("function") or {}).get("name") if isinstance(choice, dict)
            else (tools[0].get("function") or {}).get("name"))
    users = [m for m in request.get("messages") or [] if m.get("role") == "user"]
    text = _text_of(users[-1].get("content")) if users else ""
    return ToolCallDelta(0, new_tool_call_id(), name, json.dumps({"input": text}))


class FakeEngine(LLMEngine, EmbeddingEngine, RerankEngine):
    """Echo chat, hashed embeddings and word-overlap rerank, deterministic and instant."""

    @property
    def model_type(self) -> str:  # type: ignore[override]
        """The type this instance was launched as (the class serves all three)."""
        return self.config.model_type

    @property
    def capabilities(self):  # type: ignore[override]
        """The operations of the type it was launched as."""
        return _CAPABILITIES.get(self.config.model_type.lower(), frozenset())

    def __init__(self, config: EngineConfig):
        super().__init__(config)
        options = dict(config.options or {})
        self.delay = _number(options, "delay_per_token", 0.0)
        self.load_delay = _number(options, "load_delay", 0.0)
        self.dimensions = int(_number(options, "dimensions", 8, int)) or 8
        self.fail_on_load = options.get("fail_on_load")
        self.options = options
        self.loaded = False
        self.active_streams = 0
        self._aborted: Dict[str, bool] = {}

    def load(self) -> None:
        if self.load_delay:
            time.sleep(self.load_delay)
        if self.fail_on_load:
            raise ModelLaunchError(str(self.fail_on_load))
        self.loaded = True

    def close(self) -> None:
        self.loaded = False

    def describe(self) -> Dict[str, Any]:
        return {"engine": "fake", "model_type": self.config.model_type,
                "options": dict(self.options)}

    def _serves(self, model_type: str, what: str) -> None:
        if self.config.model_type.lower() != model_type.lower():
            raise InvalidRequestError(
                f"Model {self.config.model_uid!r} (type {self.config.model_type}) "
                f"does not support {what}", param="model")

    # LLM -----------------------------------------------------------------

    def _answer(self, request: Dict[str, Any], chat: bool) -> Tuple[List[List[str]], int]:
        """The pieces of each choice and the prompt's token count."""
        if chat:
            messages = request.get("messages")
            if not isinstance(messages, list) or not messages:
                raise InvalidRequestError("messages must be a non-empty list", param="messages")
            users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
            prompts = [_text_of(users[-1].get("content")) if users else ""]
            prompt_tokens = sum(len(_words(_text_of(m.get("content")))) for m in messages
                                if isinstance(m, dict))
        else:
            prompt = request.get("prompt")
            if prompt is None or prompt == []:
                raise InvalidRequestError("prompt is required", param="prompt")
            if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
                prompts = list(prompt)
            else:
                prompts = [prompt if isinstance(prompt, str) else json.dumps(prompt)]
            prompt_tokens = sum(len(_words(p)) for p in prompts)
        n = request.get("n") or 1
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InvalidRequestError(f"n must be a positive integer, got {n!r}", param="n")
        choices = [_WORD.findall(f"echo: {p}") for p in prompts for _ in range(n)]
        return choices, prompt_tokens

    def start_chat(self, request: Dict[str, Any]) -> Generation:
        self._serves("LLM", "chat")
        answers, prompt_tokens = self._answer(request, chat=True)
        return self._generation(request, answers, prompt_tokens, chat=True)

    def start_completion(self, request: Dict[str, Any]) -> Generation:
        self._serves("LLM", "completions")
        answers, prompt_tokens = self._answer(request, chat=False)
        return self._generation(request, answers, prompt_tokens, chat=False)

    def count_chat_tokens(self, request: Dict[str, Any]) -> int:
        return self._answer(request, chat=True)[1]

    def _generation(self, request: Dict[str, Any], answers: List[List[str]], prompt_tokens: int,
                    chat: bool) -> Generation:
        rid = str(request.get("request_id") or uuid.uuid4().hex)
        call = _forced_call(request) if chat else None
        thinking = chat and bool(self.options.get("reasoning"))
        prompts = [] if chat else _prompt_texts(request)
        n = request.get("n") or 1
        self._aborted[rid] = False  # abortable from now on, before the first delta is pulled
        return Generation(rid, int(time.time()), len(answers),
                          self._deltas(rid, request, answers, prompt_tokens, call, thinking),
                          n=n, prompts=prompts, reasoning=thinking)

    async def abort(self, request_id: str) -> bool:
        if request_id in self._aborted:
            self._aborted[request_id] = True
            return True
        return False

    async def _deltas(self, rid: str, request: Dict[str, Any], answers: List[List[str]],
                      prompt_tokens: int, call: Optional[ToolCallDelta],
                      thinking: bool) -> AsyncIterator[Any]:
        """Word by word (after a reasoning word when asked); closing it stops at once."""
        cuts = [_cut(pieces, request) for pieces in answers]
        self.active_streams += 1
        try:
            if thinking:
                for index in range(len(cuts)):
                    yield ChoiceDelta(index, reasoning="Thinking about the echo.")
            for step in range(0 if call else max((len(k) for k, _ in cuts), default=0)):
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self._aborted.get(rid):
                    raise RequestAbortedError(f"request {rid!r} was aborted", param="request_id")
                for index, (kept, _) in enumerate(cuts):
                    if step < len(kept):
                        yield ChoiceDelta(index, content=kept[step])
            for index, (_, reason) in enumerate(cuts):
                if call is not None:
                    yield ChoiceDelta(index, tool_calls=[call], finish_reason="tool_calls")
                else:
                    yield ChoiceDelta(index, finish_reason=reason)
            produced = len(cuts) if call else sum(len(kept) for kept, _ in cuts)
            yield Usage(prompt_tokens, produced)
        finally:
            self.active_streams -= 1
            self._aborted.pop(rid, None)

    # Embedding and rerank ---------------------------------------------------

    def _vector(self, text: str, size: int) -> List[float]:
        raw, block = b"", 0
        while len(raw) < 4 * size:
            raw += hashlib.sha256(f"{block}:{text}".encode()).digest()
            block += 1
        values = [v / 2**31 - 1.0 for v in struct.unpack(f"<{size}I", raw[:4 * size])]
        norm = math.sqrt(sum(v * v for v in values)) or 1.0
        return [v / norm for v in values]

    async def embed(self, request: Dict[str, Any]) -> Dict[str, Any]:
        self._serves("embedding", "embeddings")
        given = request.get("input")
        if isinstance(given, str) or (isinstance(given, list) and given
                                      and all(isinstance(t, int) for t in given)):
            given = [given]
        if not isinstance(given, list) or not given:
            raise InvalidRequestError("input must be a string or a non-empty list", param="input")
        size = request.get("dimensions") or self.dimensions
        data, tokens = [], 0
        for index, item in enumerate(given):
            text = item if isinstance(item, str) else json.dumps(item)
            tokens += len(_words(text)) if isinstance(item, str) else len(item)
            vector: Any = self._vector(text, int(size))
            if request.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        return {"object": "list", "data": data, "model": self.config.model_uid,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    async def rerank(self, request: Dict[str, Any]) -> Dict[str, Any]:
        self._serves("rerank", "rerank")
        query, documents = request.get("query"), request.get("documents")
        if not isinstance(query, str):
            raise InvalidRequestError("query must be a string", param="query")
        if not isinstance(documents, list) or not documents:
            raise InvalidRequestError("documents must be a non-empty list", param="documents")
        wanted = set(_words(query))
        scored = []
        for index, doc in enumerate(documents):
            words = set(_words(str(doc)))
            scored.append((len(wanted & words) / len(wanted | words) if wanted | words else 0.0,
                           index))
        scored.sort(key=lambda pair: (-pair[0], pair[1]))
        top_n = request.get("top_n")
        if top_n is not None:
            scored = scored[:int(top_n)]
        results = [{"index": index, "relevance_score": score,
                    "document": {"text": documents[index]} if request.get("return_documents")
                    else None} for score, index in scored]
        tokens = len(_words(query)) + sum(len(_words(str(d))) for d in documents)
        meta = {"api_version": None, "billed_units": None, "warnings": None,
                "tokens": {"input_tokens": tokens, "output_tokens": 0}
                if request.get("return_len") else None}
        return {"id": str(uuid.uuid4()), "results": results, "meta": meta}
