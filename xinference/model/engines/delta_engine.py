"""Request preparation shared by engines whose backend streams text per choice:
transformers, vLLM, SGLang and MLX.

A subclass loads its backend (and calls :meth:`DeltaEngine._setup_text` with the
model's Hugging Face tokenizer), then implements :meth:`DeltaEngine._streams`: for a
validated :class:`Job` it returns async iterators of :class:`Delta` (new text,
its token logprobs and, once per choice, the finish reason). Stop strings are the
backend's job (``job.params.stop``), as is the token budget (``job.budgets``).

This class renders chat prompts, counts their tokens, and parses reasoning and
tool calls out of the text with the engine-independent pieces of
:mod:`xinference.model.llm`, yielding typed deltas (:mod:`..llm.deltas`) that the
serving layer shapes for each API dialect, so every engine answers alike. Backend streams run
in tasks that feed one queue; closing a response stream or :meth:`abort`
cancels those tasks and calls :meth:`DeltaEngine._stop`, which tells the backend
to drop the request.

:func:`coerce_options` turns launch options (strings from the CLI) into typed
keyword arguments for a backend's argument dataclass, naming unknown options.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import re
import threading
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Dict, Iterable, List, Mapping, Optional, Set, Tuple

from ...errors import (EngineUnavailableError, InvalidRequestError, ModelLaunchError,
                       ModelUnavailableError, RequestAbortedError)
from ...settings import get_settings
from ..llm import protocol as P
from ..llm.assembler import ChatDeltaAssembler, parsed_delta
from ..llm.deltas import Generation, Usage
from ..llm.chat_template import (choose_chat_template, compile_template, render_chat_template,
                                 special_tokens, template_kwargs)
from ..llm.grammar import response_format_schema
from ..llm.params import SamplingParams, sampling_params_from_request
from ..llm.reasoning import prompt_opens_reasoning, reasoning_tags
from ..llm.token_count import count_chat_tokens
from ..llm.tool_calls import FORMATS, forced_call_schema, offered_tools, tool_names
from ..operations import Operation
from .base import LLMEngine

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_END = object()
_ABORTED = object()


@dataclass
class Delta:
    """What one choice produced since its last delta (``completion_tokens``: its total so far)."""

    index: int
    text: str = ""
    logprobs: List[P.TokenLogprob] = field(default_factory=list)
    finish_reason: Optional[str] = None
    completion_tokens: int = 0
    stop_sequence: Optional[str] = None


@dataclass
class Job:
    """A validated request: token prompts, sampling, budgets and how to present the output."""

    request_id: str
    prompts: List[List[int]]
    params: SamplingParams
    budgets: List[int]
    created: int
    schema: Optional[dict] = None
    texts: List[str] = field(default_factory=list)
    reasoning: Optional[Tuple[str, str]] = None
    in_reasoning: bool = False
    tool_format: Optional[str] = None
    tool_names: Optional[Set[str]] = None
    forced: bool = False
    backend_ids: List[str] = field(default_factory=list)
    backend: Any = None
    inputs: List[Dict[str, Any]] = field(default_factory=list)  # per prompt: e.g. pixel values

    @property
    def n_choices(self) -> int:
        return len(self.prompts) * self.params.n


# --------------------------------------------------------------------------- launch options
def dataclass_fields(cls: Any) -> Dict[str, Tuple[str, Any]]:
    """``{name: (annotation text, default)}`` of a dataclass (``None`` default when required)."""
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        out[f.name] = (str(f.type), default)
    return out


def _convert(raw: str, kind: Any) -> Any:
    if kind is bool:
        text = raw.strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(raw)
    if kind == "json":
        return json.loads(raw)
    return kind(raw.strip()) if kind in (int, float) else raw


def coerce_value(raw: Any, annotation: str, default: Any) -> Any:
    """``raw`` converted to the type a field's annotation or default asks for.

    Non-string values pass as they are; strings are read as bool, int, float,
    JSON (dicts and lists) or kept as text, in the order the annotation allows.
    """
    if not isinstance(raw, str):
        return raw
    words = set(re.findall(r"[a-z_]+", annotation.lower()))
    nullable = default is None or words & {"none", "optional"}
    if nullable and raw.strip().lower() in ("none", "null"):
        return None
    kinds: List[Any] = []
    if isinstance(default, bool) or "bool" in words:
        kinds.append(bool)
    if (isinstance(default, int) and not isinstance(default, bool)) or "int" in words:
        kinds.append(int)
    if isinstance(default, float) or "float" in words:
        kinds.append(float)
    if isinstance(default, (dict, list)) or words & {"dict", "list", "tuple", "set", "mapping"}:
        kinds.append("json")
    if not kinds or words & {"str", "literal", "any", "path"}:
        kinds.append(str)
    for kind in kinds:
        try:
            return _convert(raw, kind)
        except ValueError:
            continue
    names = " or ".join(k if isinstance(k, str) else k.__name__ for k in kinds)
    raise ValueError(f"expected {names}, got {raw!r}")


def coerce_options(options: Mapping[str, Any], fields: Mapping[str, Tuple[str, Any]], engine: str,
                   target: str, managed: Iterable[str] = ()) -> Dict[str, Any]:
    """Launch ``options`` as typed keyword arguments for ``target`` (whose fields are ``fields``).

    ``-`` in names becomes ``_``. An unknown name, a name in ``managed`` (set by
    xinference) or a value of the wrong type raises :class:`InvalidRequestError`
    naming the option.
    """
    out: Dict[str, Any] = {}
    for key, raw in (options or {}).items():
        name = str(key).replace("-", "_")
        if name in managed:
            raise InvalidRequestError(f"{engine} option {key!r} is set by xinference and cannot be "
                                      "changed", param=str(key))
        if name not in fields:
            raise InvalidRequestError(
                f"Unknown {engine} option {key!r}: it is not a field of {target}", param=str(key))
        annotation, default = fields[name]
        try:
            out[name] = coerce_value(raw, annotation, default)
        except ValueError as exc:
            raise InvalidRequestError(f"Bad value for {engine} option {key!r}: {exc}",
                                      param=str(key)) from None
    return out


def gpu_count(config: Any) -> int:
    """How many GPUs the replica was given (``gpu_idx`` or an integer ``n_gpu``), at least 1."""
    if config.gpu_idx:
        return len(config.gpu_idx)
    try:
        return max(1, int(config.n_gpu))
    except (TypeError, ValueError):
        return 1


def import_gpu_engine(module: str, name: str, extra: str) -> Any:
    """The engine's module, or EngineUnavailableError saying what is missing.

    ``name`` is how users know the engine ("vLLM"); ``extra`` the ``xinference``
    extra that installs it. The engines behind this need a CUDA GPU.
    """
    from . import registry

    try:
        engine = importlib.import_module(module)
    except ImportError as exc:
        raise EngineUnavailableError(f"{name} is not installed ({exc}); install it with: "
                                     f"pip install 'xinference[{extra}]'") from None
    if not registry.has_cuda_device():
        raise EngineUnavailableError(f"{name} needs a CUDA GPU and none is visible on this machine")
    return engine


def _special_texts(tokenizer: Any) -> Optional[Set[str]]:
    """The special and added tokens' texts, when the tokenizer tells them (None: unknown)."""
    try:
        return set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    except (AttributeError, TypeError):
        return None


# --------------------------------------------------------------------------- the engine
class DeltaEngine(LLMEngine):
    """Chat and completions over a backend that streams :class:`Delta` objects."""

    engine_name = ""
    capabilities = LLMEngine.capabilities | {Operation.COUNT_TOKENS}
    reads_images = False  # True: image parts reach the chat template (see _chat_inputs)

    def __init__(self, config):
        super().__init__(config)
        self.tokenizer: Any = None
        self.chat_template: Optional[str] = None
        self.context_length: Optional[int] = None
        self.stop_ids: Set[int] = set()
        self.stop_strings: List[str] = []
        self.defaults: Dict[str, Any] = {}
        self._running: Dict[str, Tuple[List[asyncio.Task], asyncio.Queue]] = {}
        self._tokenizer_lock = threading.Lock()

    # ------------------------------------------------------------ subclass hooks
    def _streams(self, job: Job) -> List[AsyncIterator[Delta]]:
        """The backend streams of ``job`` (together they finish every choice once)."""
        raise NotImplementedError

    async def _stop(self, job: Job) -> None:
        """Tell the backend to drop what is left of ``job`` (closed early or aborted)."""

    def _prepare(self, job: Job) -> None:
        """Build the backend's request parameters (in ``job.backend``); raise on bad requests."""

    def _loaded(self) -> bool:
        return self.tokenizer is not None

    def _chat_inputs(self, prompt: str, request: Dict[str, Any]) -> Dict[str, Any]:
        """The chat prompt as :class:`Job` fields: its token ids (``prompts``); an engine
        that reads images adds their model inputs (``inputs``)."""
        return {"prompts": [self._encode(prompt, special=False)]}

    # ------------------------------------------------------------ loading helpers
    def _setup_text(self, tokenizer: Any, context_length: Optional[int],
                    eos_ids: Iterable[int] = ()) -> None:
        """Record the tokenizer, chat template, context length and stop tokens of the model."""
        self.tokenizer = tokenizer
        family = self.config.family or {}
        self.chat_template = choose_chat_template(family, getattr(tokenizer, "chat_template", None))
        if self.chat_template:
            try:
                compile_template(self.chat_template)
            except Exception as exc:  # noqa: BLE001 - any failure is a launch error
                raise ModelLaunchError(
                    f"The model's chat template does not compile: {exc}") from None
        self.context_length = (self.config.context_length or family.get("context_length")
                               or context_length)
        ids = {i for i in eos_ids if isinstance(i, int) and i >= 0}
        if getattr(tokenizer, "eos_token_id", None) is not None:
            ids.add(tokenizer.eos_token_id)
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        special = _special_texts(tokenizer)
        for text in family.get("stop") or []:
            if text in vocab and (special is None or text in special):
                ids.add(vocab[text])
            else:
                self.stop_strings.append(text)
        self.stop_ids = ids

    def describe(self) -> Dict[str, Any]:
        return {"engine": self.engine_name, "context_length": self.context_length,
                "running_requests": len(self._running)}

    # ------------------------------------------------------------ preparing
    def _encode(self, text: str, special: bool) -> List[int]:
        with self._tokenizer_lock:
            return list(self.tokenizer.encode(text, add_special_tokens=special))

    def _decode(self, ids: List[int]) -> str:
        with self._tokenizer_lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _token_text(self, token: int) -> str:
        with self._tokenizer_lock:
            return self.tokenizer.decode([token], skip_special_tokens=False)

    def _job(self, request: Dict[str, Any], kind: str, prompts: List[List[int]],
             **extra: Any) -> Job:
        if not self._loaded():
            raise ModelUnavailableError("The model is not loaded (or was stopped)")
        cap = get_settings().max_tokens
        params = sampling_params_from_request(request, kind, self.defaults, cap)
        if self.stop_strings:
            params = replace(params, stop=params.stop + self.stop_strings)
        budgets = [params.token_budget(len(p), self.context_length) for p in prompts]
        schema = extra.pop("schema", None) or response_format_schema(request.get("response_format"))
        job = Job(str(request.get("request_id") or P.new_request_id()), prompts, params, budgets,
                  P.now(), schema=schema, **extra)
        self._prepare(job)
        return job

    def _chat_job(self, request: Dict[str, Any]) -> Job:
        if not self._loaded():
            raise ModelUnavailableError("The model is not loaded (or was stopped)")
        if not self.chat_template:
            raise InvalidRequestError("This model has no chat template; use /v1/completions",
                                      param="messages")
        tools = offered_tools(request)
        prompt = render_chat_template(self.chat_template, request.get("messages"), tools, True,
                                      special_tokens(self.tokenizer),
                                      template_kwargs(self.config.enable_thinking, request),
                                      images=self.reads_images)
        tags = reasoning_tags(self.config.family or {}, self.chat_template)
        fmt = (self.config.family or {}).get("tool_call_format") or "auto"
        # tool_choice "required" or a named function: the backend's guidance makes calls
        forced = forced_call_schema(tools, request.get("tool_choice"))
        if forced:
            fmt = self._forced_format(fmt)
        inputs = self._chat_inputs(prompt, request)
        return self._job(
            request, "chat", inputs.pop("prompts"), **inputs, reasoning=tags,
            in_reasoning=(bool(tags) and prompt_opens_reasoning(prompt, *tags)
                          and not request.get("response_format") and not forced),
            tool_format=(fmt if fmt in FORMATS else "auto") if tools else None,
            tool_names=tool_names(tools), schema=forced, forced=bool(forced))

    def _forced_format(self, family_format: str) -> str:
        """The tool-call format the backend writes when ``tool_choice`` demands a call."""
        return "json"

    def _completion_job(self, request: Dict[str, Any]) -> Job:
        prompt = request.get("prompt")
        texts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidRequestError("prompt must be a string or a non-empty list of strings",
                                      param="prompt")
        if not self._loaded():
            raise ModelUnavailableError("The model is not loaded (or was stopped)")
        return self._job(request, "completion", [self._encode(t, special=True) for t in texts],
                         texts=texts)

    # ------------------------------------------------------------ generating
    async def _pump(self, stream: AsyncIterator[Delta], queue: asyncio.Queue) -> None:
        try:
            async with contextlib.aclosing(stream):
                async for delta in stream:
                    queue.put_nowait(delta)
        except asyncio.CancelledError:
            raise
        except ValueError as exc:  # the backend's own validation of the request
            queue.put_nowait(InvalidRequestError(f"{self.engine_name} refused the request: {exc}"))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer
            queue.put_nowait(exc)
        queue.put_nowait(_END)

    async def _generate(self, job: Job) -> AsyncIterator[Delta]:
        """Every choice's deltas, in arrival order, until each choice has finished."""
        queue: asyncio.Queue = asyncio.Queue()
        tasks = [asyncio.ensure_future(self._pump(s, queue)) for s in self._streams(job)]
        self._running[job.request_id] = (tasks, queue)
        finished: Set[int] = set()
        live = len(tasks)
        try:
            while live and len(finished) < job.n_choices:
                item = await queue.get()
                if item is _ABORTED:
                    raise RequestAbortedError(f"Request {job.request_id} was aborted")
                if item is _END:
                    live -= 1
                    continue
                if isinstance(item, BaseException):
                    raise item
                if item.finish_reason is not None:
                    finished.add(item.index)
                yield item
            for index in range(job.n_choices):
                if index not in finished:
                    yield Delta(index, finish_reason="stop")
        finally:
            self._running.pop(job.request_id, None)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if len(finished) < job.n_choices:
                await self._stop(job)

    async def abort(self, request_id: str) -> bool:
        entry = self._running.get(request_id)
        if entry is None:
            return False
        tasks, queue = entry
        for task in tasks:
            task.cancel()
        queue.put_nowait(_ABORTED)
        return True

    # ------------------------------------------------------------ typed results
    def start_chat(self, request: Dict[str, Any]) -> Generation:
        """Validates at once (bad requests raise here); the deltas run the work."""
        return self._generation(self._chat_job(request), chat=True)

    def start_completion(self, request: Dict[str, Any]) -> Generation:
        return self._generation(self._completion_job(request), chat=False)

    def count_chat_tokens(self, request: Dict[str, Any]) -> int:
        """Prompt tokens of a chat request, rendered as :meth:`start_chat` renders it."""
        if not self._loaded():
            raise ModelUnavailableError("The model is not loaded (or was stopped)")
        return count_chat_tokens(self.chat_template, lambda text: self._encode(text, False),
                                 request, self.config.enable_thinking,
                                 special_tokens(self.tokenizer))

    def _generation(self, job: Job, chat: bool) -> Generation:
        return Generation(job.request_id, job.created, job.n_choices, self._typed(job, chat),
                          n=job.params.n, prompts=job.texts, reasoning=bool(job.reasoning),
                          logprobs=job.params.logprobs,
                          prompt_tokens=sum(map(len, job.prompts)))

    async def _typed(self, job: Job, chat: bool) -> AsyncIterator[Any]:
        assemblers = [ChatDeltaAssembler(job.reasoning, job.in_reasoning, job.tool_format,
                                         job.tool_names) if chat else None
                      for _ in range(job.n_choices)]
        tokens = [0] * job.n_choices
        async with contextlib.aclosing(self._generate(job)) as deltas:
            async for d in deltas:
                tokens[d.index] = max(tokens[d.index], d.completion_tokens)
                delta = parsed_delta(assemblers[d.index], d.index, d.text, d.finish_reason,
                                     d.logprobs)
                delta.stop_sequence = d.stop_sequence
                yield delta
        yield Usage(sum(map(len, job.prompts)), sum(tokens))
