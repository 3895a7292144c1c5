"""The llama.cpp engine, on xllamacpp: GGUF models, chat and text completion.

xllamacpp runs llama.cpp's server in-process; each handler call blocks a worker
thread. A streamed call hands every chunk to a callback feeding an asyncio queue;
the callback returning True stops the slot: that is how closed and aborted streams
end. llama.cpp's chunks become typed deltas (its own template, reasoning and
tool-call parsing stay in charge); the serving layer shapes them for each API.
Filled in where llama.cpp falls short: ``n`` > 1 and prompt lists run as separate
calls with merged choices and usage, a forced ``tool_choice`` is written under
llama.cpp's JSON grammar and parsed here, and whole answers are streamed inside,
so that a cancelled caller or abort() stops them too.
Images (``image_url`` data URIs; the serving layer has fetched any URL) need the
multimodal projector given at launch (``mmproj``), which turns them into image tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Set

from ...errors import (InvalidRequestError, ModelLaunchError, ModelUnavailableError,
                       RequestAbortedError, XinferenceError)
from ..llm.assembler import ChatDeltaAssembler, parsed_delta
from ..llm.deltas import ChoiceDelta, Generation, ToolCallDelta, Usage
from ..llm.images import image_urls
from ..llm.protocol import TokenLogprob, new_request_id, now
from ..llm.tool_calls import forced_call_schema, tool_names
from ..operations import Operation
from . import llama_cpp_tokens
from .base import EngineConfig, LLMEngine
from .llama_cpp_params import build_params

_DROP = ("model", "user", "request_id", "stream", "stream_options", "n", "echo")
_HANDLERS = {"chat": "handle_chat_completions", "text": "handle_completions"}
_DONE = object()


def _param_of(message: str) -> Optional[str]:
    found = re.search(r"'([A-Za-z_][A-Za-z0-9_]*)'", message)
    return found.group(1) if found else None


def _error_from(err: Any) -> XinferenceError:
    """llama.cpp's error body (``{"code", "message", "type"}``) as a domain error."""
    err = err if isinstance(err, dict) else {"message": str(err)}
    code, message = err.get("code", 500), str(err.get("message") or "llama.cpp failed")
    if isinstance(code, int) and 400 <= code < 500:
        return InvalidRequestError(message, param=_param_of(message))
    if code == 503:
        return ModelUnavailableError(message)
    return XinferenceError(f"llama.cpp: {message}")


def _invoke(fn: Callable, payload: Dict[str, Any], *callback: Callable) -> Any:
    """Call an xllamacpp handler; its ValueError/RuntimeError mean a bad request."""
    try:
        return fn(payload, *callback)
    except (ValueError, RuntimeError) as exc:
        raise InvalidRequestError(str(exc), param=_param_of(str(exc))) from None


@dataclass
class _Job:
    """One llama.cpp call: ``index`` is its choice index, ``group`` its prompt's."""
    index: int
    group: int
    payload: Dict[str, Any]


class _StreamRun:
    """Streaming llama.cpp calls on worker threads, delivering chunks to one queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int):
        self.loop, self.pending, self.queue = loop, count, asyncio.Queue()
        self.stopped, self.reason = False, None

    def stop(self, reason: Optional[XinferenceError] = None) -> None:
        """Stop every call at its next token; ``reason`` is raised to the consumer."""
        self.reason, self.stopped = self.reason or reason, True

    def _post(self, item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the event loop is closed: nobody listens any more
            self.stopped = True

    def run(self, fn: Callable, job: _Job) -> None:
        def on_chunk(chunk: Dict[str, Any]) -> bool:
            if not self.stopped:
                self._post((job, chunk))
            return self.stopped

        try:
            _invoke(fn, job.payload, on_chunk)
            self._post((job, _DONE))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            self._post((job, exc))

    async def chunks(self) -> AsyncIterator[tuple]:
        while self.pending:
            job, item = await self.queue.get()
            if item is _DONE:
                self.pending -= 1
            elif isinstance(item, BaseException):
                raise item
            elif "error" in item:
                raise _error_from(item["error"])
            else:
                yield job, item


def _add_usage(total: Dict[str, Any], seen: set, group: int, usage: Dict[str, Any]) -> None:
    """Sum completion tokens over choices; count each prompt once, as OpenAI does."""
    done = total.get("completion_tokens", 0) + (usage.get("completion_tokens") or 0)
    total["completion_tokens"] = done
    if group not in seen:
        seen.add(group)
        total["prompt_tokens"] = total.get("prompt_tokens", 0) + (usage.get("prompt_tokens") or 0)
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        total.setdefault("prompt_tokens_details", {"cached_tokens": 0})["cached_tokens"] += cached
    total["total_tokens"] = total.get("prompt_tokens", 0) + done


def _token_logprobs(logprobs: Any) -> List[TokenLogprob]:
    """llama.cpp's ``logprobs.content`` entries as typed token logprobs."""
    if not isinstance(logprobs, dict):
        return []
    return [TokenLogprob(e.get("token", ""), e.get("logprob"),
                         [(t.get("token", ""), t.get("logprob"))
                          for t in e.get("top_logprobs") or []])
            for e in logprobs.get("content") or []]


def _tool_pieces(delta: Dict[str, Any]) -> List[ToolCallDelta]:
    return [ToolCallDelta(call.get("index", 0), call.get("id"),
                          (call.get("function") or {}).get("name"),
                          (call.get("function") or {}).get("arguments") or "")
            for call in delta.get("tool_calls") or []]


def _typed_delta(choice: Dict[str, Any], kind: str,
                 assembler: Optional[ChatDeltaAssembler]) -> ChoiceDelta:
    """One llama.cpp choice chunk as a typed delta (a forced call's JSON via ``assembler``)."""
    reason, logprobs = choice.get("finish_reason"), _token_logprobs(choice.get("logprobs"))
    if kind != "chat":
        return ChoiceDelta(choice["index"], choice.get("text") or "", logprobs=logprobs,
                           finish_reason=reason)
    delta = choice.get("delta") or {}
    if assembler is not None:
        return parsed_delta(assembler, choice["index"], delta.get("content") or "", reason,
                            logprobs)
    return ChoiceDelta(choice["index"], delta.get("content") or "",
                       delta.get("reasoning_content") or "", _tool_pieces(delta), logprobs,
                       finish_reason=reason)


class LlamaCppEngine(LLMEngine):
    """Chat and completions on a GGUF model with llama.cpp's continuous batching.

    ``config.options``: ``n_ctx``, ``n_parallel`` (slots, default 4), ``n_threads``
    (default min(2, CPUs)), and any ``xllamacpp.CommonParams`` field by name or dotted
    path (``n_gpu_layers``, ``sampling.temp``, ``chat_template``), coerced from strings.
    """

    capabilities = LLMEngine.capabilities | {Operation.COUNT_TOKENS}

    def __init__(self, config: EngineConfig):
        super().__init__(config)
        self._server: Any = None
        self._api_key: Optional[str] = None
        self._executor: Optional[ThreadPoolExecutor] = None
        self._facts: Dict[str, Any] = {}
        self._projector = ""
        self._runs: Dict[str, List[_StreamRun]] = {}
        self._live: Set[_StreamRun] = set()
        family = config.family or {}
        self._reasoning = bool(family.get("reasoning_start_tag")
                               or "reasoning" in (family.get("model_ability") or []))

    def load(self) -> None:
        params = build_params(self.config)
        self._api_key = params.api_keys[0]
        path = self.config.model_path
        if not os.path.isfile(path):
            raise ModelLaunchError(f"llama.cpp needs a GGUF file and {path!r} is not one")
        import xllamacpp

        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:  # noqa: BLE001 - reported with its cause
            raise ModelLaunchError(f"llama.cpp could not load {path}: {exc}") from None
        slots = params.n_parallel
        self._executor = ThreadPoolExecutor(4 * slots + 4, thread_name_prefix="llama.cpp")
        self._projector = params.mmproj.path
        self._facts = {"engine": "llama.cpp", "n_ctx": params.n_ctx, "n_parallel": slots,
                       "n_ctx_per_slot": params.n_ctx // slots,
                       "threads": params.cpuparams.n_threads, "vision": bool(self._projector)}

    def close(self) -> None:
        self._server = None  # freed when the calls still running return
        for run in list(self._live):
            run.stop(ModelUnavailableError("the model was stopped while answering"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def describe(self) -> Dict[str, Any]:
        return dict(self._facts)

    def metrics(self) -> str:
        """llama.cpp's Prometheus metrics text (slots busy, tokens, speeds)."""
        return self._require().handle_metrics()

    def count_chat_tokens(self, request: Dict[str, Any]) -> int:
        """Prompt tokens of a chat request: llama.cpp renders and tokenizes it, no generation."""
        payload = self._jobs(dict(request, n=1), "chat")[0].payload
        return llama_cpp_tokens.count_chat_tokens(self._require(), payload, self._api_key,
                                                  by_generation=bool(self._images(request)))

    def start_chat(self, request: Dict[str, Any]) -> Generation:
        return self._generation(request, "chat")

    def start_completion(self, request: Dict[str, Any]) -> Generation:
        return self._generation(request, "text")

    async def abort(self, request_id: str) -> bool:
        runs = self._runs.get(request_id) or []
        for run in runs:
            run.stop(RequestAbortedError(f"request {request_id!r} was aborted",
                                         param="request_id"))
        return bool(runs)

    def _require(self) -> Any:
        if self._server is None:
            raise ModelUnavailableError("the llama.cpp engine is not loaded (or was closed)")
        return self._server

    def _handler(self, kind: str) -> Callable:
        return getattr(self._require(), _HANDLERS[kind])

    def _images(self, request: Dict[str, Any]) -> int:
        """How many images the chat has; a 400 when this replica cannot take them."""
        urls = image_urls(request.get("messages"))
        if urls and not self._projector:
            raise InvalidRequestError(
                "this model was launched without a multimodal projector, so it cannot read "
                "images; launch it with the option mmproj=<projector GGUF>", param="messages")
        if any(not url.lower().startswith("data:") for url in urls):
            raise InvalidRequestError("images must reach the engine as data URIs",
                                      param="messages")
        return len(urls)

    def _jobs(self, request: Dict[str, Any], kind: str) -> List[_Job]:
        """One llama.cpp call per choice: ``n`` times each prompt, in OpenAI's order."""
        if kind == "chat":
            self._images(request)
        body = {k: v for k, v in request.items() if k not in _DROP}
        forced = forced_call_schema(body.get("tools"), body.get("tool_choice"))
        if forced and kind == "chat":  # llama.cpp may not enforce it: its JSON grammar does
            body.pop("tool_choice")
            body.pop("response_format", None)
            body["json_schema"] = forced
        if "max_completion_tokens" in body:
            body["max_tokens"] = body.pop("max_completion_tokens")
        n = 1 if request.get("n") is None else request["n"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidRequestError(f"n must be a positive integer, got {n!r}", param="n")
        prompt = body.get("prompt")
        many = (kind == "text" and isinstance(prompt, list) and len(prompt) > 1
                and all(isinstance(p, (str, list)) for p in prompt))
        prompts = list(prompt) if many else [prompt]
        if n * len(prompts) > 128:
            raise InvalidRequestError("n times the prompt count must be at most 128", param="n")
        jobs: List[_Job] = []
        for group, prompt in enumerate(prompts):
            for i in range(n):
                payload = dict(body, prompt=prompt) if len(prompts) > 1 else dict(body)
                if i and isinstance(payload.get("seed"), int) and payload["seed"] >= 0:
                    payload["seed"] = (payload["seed"] + i) % 0xFFFFFFFF
                jobs.append(_Job(len(jobs), group, payload))
        return jobs

    def _generation(self, request: Dict[str, Any], kind: str) -> Generation:
        """Validates at once; the deltas run llama.cpp (a whole answer is streamed inside:
        a blocking call cannot be stopped, a stream can, when the caller is cancelled or
        abort() names its request)."""
        jobs = self._jobs(request, kind)
        rid = str(request.get("request_id") or new_request_id())
        prompt = request.get("prompt")
        prompts = (([prompt] if isinstance(prompt, str)
                    else [p if isinstance(p, str) else "" for p in prompt or []])
                   if kind == "text" else [])
        n = 1 if request.get("n") is None else request["n"]
        forced = kind == "chat" and forced_call_schema(request.get("tools"),
                                                       request.get("tool_choice"))
        names = tool_names(request.get("tools")) if forced else None
        return Generation(rid, now(), len(jobs), self._typed(rid, kind, jobs, names), n=n,
                          prompts=prompts, reasoning=self._reasoning,
                          logprobs=bool(request.get("logprobs")))

    async def _typed(self, rid: str, kind: str, jobs: List[_Job],
                     forced_names: Optional[set]) -> AsyncIterator[Any]:
        assemblers = ({job.index: ChatDeltaAssembler(tool_format="json", tool_names=forced_names)
                       for job in jobs} if forced_names is not None else {})
        total: Dict[str, Any] = {}
        async with contextlib.aclosing(self._stream(rid, kind, jobs, total)) as chunks:
            async for chunk in chunks:
                for choice in chunk["choices"]:
                    yield _typed_delta(choice, kind, assemblers.get(choice["index"]))
        yield Usage(total.get("prompt_tokens", 0), total.get("completion_tokens", 0),
                    (total.get("prompt_tokens_details") or {}).get("cached_tokens"))

    async def _stream(self, rid: str, kind: str, jobs: List[_Job],
                      total: Dict[str, Any]) -> AsyncIterator[Dict[str, Any]]:
        """Chunks as llama.cpp makes them, choices renumbered; usage summed into ``total``.
        Closing this generator stops every slot it uses."""
        fn, loop = self._handler(kind), asyncio.get_running_loop()
        run = _StreamRun(loop, len(jobs))
        self._live.add(run)
        self._runs.setdefault(rid, []).append(run)
        seen: set = set()
        try:
            for job in jobs:
                job.payload.update(stream=True, stream_options={"include_usage": True})
                loop.run_in_executor(self._executor, run.run, fn, job)
            async for job, chunk in run.chunks():
                if chunk.get("usage"):
                    _add_usage(total, seen, job.group, chunk.pop("usage"))
                if not chunk.get("choices"):
                    continue
                for choice in chunk["choices"]:
                    choice["index"] = job.index
                yield chunk
            if run.reason is not None:
                raise run.reason
        finally:
            run.stop()
            self._live.discard(run)
            runs = self._runs.get(rid, [])
            if run in runs:
                runs.remove(run)
            if not runs:
                self._runs.pop(rid, None)
