"""The llama.cpp engine, on xllamacpp: GGUF models, chat and text completion.

xllamacpp runs llama.cpp's server in-process; each handler call blocks a worker
thread. A streamed call hands every chunk to a callback feeding an asyncio queue;
the callback returning True stops the slot: that is how closed and aborted streams
end. Filled in where llama.cpp falls short of OpenAI: ``n`` > 1 and prompt lists run
as separate calls with merged choices and usage, completion ``logprobs`` take the
legacy shape, ``echo`` works, and whole (non-streamed) answers are streamed inside
and gathered, so that a cancelled caller or abort() stops them too.
"""

from __future__ import annotations

import asyncio
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Set

from ...errors import (InvalidRequestError, ModelLaunchError, ModelUnavailableError,
                       RequestAbortedError, XinferenceError)
from ..llm.assembler import content_calls_as_tool_calls
from ..llm.tool_calls import forced_call_schema, tool_names
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
    echo: Optional[str] = None


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


def _legacy_logprobs(logprobs: Any, offset: int) -> Any:
    """llama.cpp's chat-style completion logprobs in OpenAI's legacy completion shape."""
    if not isinstance(logprobs, dict) or "content" not in logprobs:
        return logprobs
    entries = logprobs.get("content") or []
    offsets = list(accumulate([offset] + [len(e.get("token", "")) for e in entries]))
    return {"tokens": [e.get("token", "") for e in entries],
            "token_logprobs": [e.get("logprob") for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs") or []}
                             for e in entries],
            "text_offset": offsets[:len(entries)]}


def _fold_call(calls: Dict[int, Dict[str, Any]], call: Dict[str, Any]) -> None:
    cur = calls.setdefault(call.get("index", 0), {"id": None, "type": "function",
                                                   "function": {"name": "", "arguments": ""}})
    if call.get("id"):
        cur["id"] = call["id"]
    function = call.get("function") or {}
    cur["function"]["name"] += function.get("name") or ""
    cur["function"]["arguments"] += function.get("arguments") or ""


def _fold(acc: Dict[int, Dict[str, Any]], choice: Dict[str, Any], kind: str) -> None:
    """Add one streamed choice to the whole choice being gathered for its index."""
    index = choice["index"]
    if kind == "chat":
        cur = acc.setdefault(index, {"index": index, "finish_reason": None, "calls": {},
                                     "message": {"role": "assistant", "content": ""}})
        delta, message = choice.get("delta") or {}, cur["message"]
        for key in ("content", "reasoning_content"):
            if delta.get(key):
                message[key] = (message.get(key) or "") + delta[key]
        for call in delta.get("tool_calls") or []:
            _fold_call(cur["calls"], call)
    else:
        cur = acc.setdefault(index, {"index": index, "text": "", "logprobs": None,
                                     "finish_reason": None})
        cur["text"] += choice.get("text") or ""
    for key, values in (choice.get("logprobs") or {}).items():
        if isinstance(values, list):
            cur["logprobs"] = cur.get("logprobs") or {}
            cur["logprobs"].setdefault(key, []).extend(values)
    if choice.get("finish_reason"):
        cur["finish_reason"] = choice["finish_reason"]


def _final_choice(cur: Dict[str, Any]) -> Dict[str, Any]:
    calls = cur.pop("calls", None)
    if calls:
        cur["message"]["tool_calls"] = [calls[k] for k in sorted(calls)]
        cur["message"]["content"] = cur["message"]["content"] or None
    return cur


class LlamaCppEngine(LLMEngine):
    """Chat and completions on a GGUF model with llama.cpp's continuous batching.

    ``config.options``: ``n_ctx``, ``n_parallel`` (slots, default 4), ``n_threads``
    (default min(2, CPUs)), and any ``xllamacpp.CommonParams`` field by name or dotted
    path (``n_gpu_layers``, ``sampling.temp``, ``chat_template``), coerced from strings.
    """

    def __init__(self, config: EngineConfig):
        super().__init__(config)
        self._server: Any = None
        self._executor: Optional[ThreadPoolExecutor] = None
        self._facts: Dict[str, Any] = {}
        self._runs: Dict[str, List[_StreamRun]] = {}
        self._live: Set[_StreamRun] = set()

    def load(self) -> None:
        params = build_params(self.config)
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
        self._facts = {"engine": "llama.cpp", "n_ctx": params.n_ctx, "n_parallel": slots,
                       "n_ctx_per_slot": params.n_ctx // slots,
                       "threads": params.cpuparams.n_threads}

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

    async def chat(self, request: Dict[str, Any]) -> Dict[str, Any]:
        return await self._whole(request, "chat")

    async def complete(self, request: Dict[str, Any]) -> Dict[str, Any]:
        return await self._whole(request, "text")

    def chat_stream(self, request: Dict[str, Any]) -> AsyncIterator[Dict[str, Any]]:
        return self._chunks(request, "chat")

    def complete_stream(self, request: Dict[str, Any]) -> AsyncIterator[Dict[str, Any]]:
        return self._stream(request, "text")

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

    def _jobs(self, request: Dict[str, Any], kind: str) -> List[_Job]:
        """One llama.cpp call per choice: ``n`` times each prompt, in OpenAI's order."""
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
        echo = kind == "text" and bool(request.get("echo"))
        jobs: List[_Job] = []
        for group, prompt in enumerate(prompts):
            for i in range(n):
                payload = dict(body, prompt=prompt) if len(prompts) > 1 else dict(body)
                if i and isinstance(payload.get("seed"), int) and payload["seed"] >= 0:
                    payload["seed"] = (payload["seed"] + i) % 0xFFFFFFFF
                jobs.append(_Job(len(jobs), group, payload,
                                 prompt if echo and isinstance(prompt, str) else None))
        return jobs

    def _meta(self, obj: Dict[str, Any], kind: str) -> Dict[str, Any]:
        obj["model"] = self.config.model_uid
        if kind == "text" and str(obj.get("id", "")).startswith("chatcmpl-"):
            obj["id"] = "cmpl-" + obj["id"][len("chatcmpl-"):]
        return obj

    @staticmethod
    def _fix_choice(choice: Dict[str, Any], job: _Job, kind: str, offsets: Dict[int, int]) -> None:
        """OpenAI details llama.cpp leaves out: the role in a choice's first chunk (missing
        when its first token is part of a multi-byte character, e.g. an emoji), null content
        beside tool calls, echo, legacy completion logprobs (``offsets`` keeps each
        choice's text position; for chat, which choices have started)."""
        if kind == "chat":
            delta = choice.get("delta")
            if delta is not None and choice["index"] not in offsets:
                offsets[choice["index"]] = 0
                choice["delta"] = {"role": "assistant", **delta}
            message = choice.get("message")
            if message and message.get("tool_calls") and not message.get("content"):
                message["content"] = None
            return
        text, offset = choice.get("text") or "", offsets.get(choice["index"])
        if offset is None:
            offset = 0
            if job.echo is not None:
                choice["text"], offset = job.echo + text, len(job.echo)
        if choice.get("logprobs") is not None:
            choice["logprobs"] = _legacy_logprobs(choice["logprobs"], offset)
        offsets[choice["index"]] = offset + len(text)

    async def _whole(self, request: Dict[str, Any], kind: str) -> Dict[str, Any]:
        """Streamed inside: a blocking llama.cpp call cannot be stopped, a stream can (when
        the caller is cancelled, e.g. its client went away, or abort() names its request)."""
        jobs = self._jobs(request, kind)
        return await self._collect(self._chunks(request, kind, jobs, usage=True), kind)

    def _chunks(self, request: Dict[str, Any], kind: str, jobs: Optional[List[_Job]] = None,
                usage: Optional[bool] = None) -> AsyncIterator[Dict[str, Any]]:
        """The stream, with forced tool calls (see :meth:`_jobs`) turned into ``tool_calls``."""
        stream = self._stream(request, kind, jobs, usage)
        if kind == "chat" and forced_call_schema(request.get("tools"), request.get("tool_choice")):
            return content_calls_as_tool_calls(stream, tool_names(request.get("tools")))
        return stream

    async def _stream(self, request: Dict[str, Any], kind: str, jobs: Optional[List[_Job]] = None,
                      usage: Optional[bool] = None) -> AsyncIterator[Dict[str, Any]]:
        """Chunks as llama.cpp makes them; closing this generator stops every slot it uses."""
        jobs = jobs or self._jobs(request, kind)
        if usage is None:
            usage = bool((request.get("stream_options") or {}).get("include_usage"))
        fn, loop, rid = self._handler(kind), asyncio.get_running_loop(), request.get("request_id")
        run = _StreamRun(loop, len(jobs))
        self._live.add(run)
        if rid:
            self._runs.setdefault(rid, []).append(run)
        total, seen, offsets, head = {}, set(), {}, None
        try:
            for job in jobs:
                job.payload.update(stream=True, stream_options={"include_usage": True})
                loop.run_in_executor(self._executor, run.run, fn, job)
            async for job, chunk in run.chunks():
                if chunk.get("usage"):
                    _add_usage(total, seen, job.group, chunk.pop("usage"))
                head = head or chunk
                if not chunk.get("choices"):
                    continue
                chunk["id"], chunk["created"] = head["id"], head["created"]
                for choice in chunk["choices"]:
                    if len(jobs) > 1:
                        choice["index"] = job.index
                    self._fix_choice(choice, job, kind, offsets)
                yield self._meta(chunk, kind)
            if run.reason is not None:
                raise run.reason
            if usage and head is not None:
                yield self._meta({key: head.get(key) for key in
                                  ("id", "object", "created", "system_fingerprint")}
                                 | {"choices": [], "usage": total}, kind)
        finally:
            run.stop()
            self._live.discard(run)
            if rid and run in self._runs.get(rid, []):
                self._runs[rid].remove(run)
                if not self._runs[rid]:
                    del self._runs[rid]

    async def _collect(self, chunks: AsyncIterator[Dict[str, Any]], kind: str) -> Dict[str, Any]:
        """One whole response from a stream of chunks (the ``request_id`` path)."""
        head, usage, acc = None, None, {}
        async for chunk in chunks:
            head = head or chunk
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                _fold(acc, choice, kind)
        if head is None:
            raise XinferenceError("llama.cpp returned no output")
        kind_name = "chat.completion" if kind == "chat" else "text_completion"
        return {"id": head["id"], "object": kind_name, "created": head["created"],
                "model": self.config.model_uid, "usage": usage,
                "system_fingerprint": head.get("system_fingerprint"),
                "choices": [_final_choice(acc[i]) for i in sorted(acc)]}
