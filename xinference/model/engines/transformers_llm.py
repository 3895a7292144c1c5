"""The transformers engine for LLMs: torch on CPU (or CUDA), with continuous batching.

Loads a Hugging Face folder (``pytorch`` format) or a GGUF file (``ggufv2``;
transformers de-quantizes it on load, which needs ``accelerate`` and
``gguf``). Requests from every caller go to one :class:`BatchScheduler`
(see :mod:`xinference.model.llm.batch_scheduler` for the batching design and
why it is ours rather than transformers' ``ContinuousBatchingManager``).
The OpenAI semantics (chat template, stop strings, reasoning, tool calls,
chunks) come from the engine-independent :mod:`xinference.model.llm` pieces.

Options (``EngineConfig.options``): ``n_threads`` (torch intra-op threads,
default 1: more threads on a busy small machine is far slower), ``device``
(``cpu``/``cuda``/..., default: cuda when present), ``dtype`` (default float32
on CPU, the checkpoint's own on GPU), ``trust_remote_code``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, AsyncIterator, Dict, List, Optional, Set, Tuple

from ...errors import (InvalidRequestError, ModelLaunchError, ModelUnavailableError,
                      RequestAbortedError, XinferenceError)
from ...settings import get_settings
from ..llm import protocol as P
from ..llm.assembler import ChatDeltaAssembler
from ..llm.chat_template import (choose_chat_template, compile_template, render_chat_template,
                                 special_tokens, template_kwargs)
from ..llm.grammar import JsonGrammar, response_format_schema
from ..llm.params import SamplingParams, sampling_params_from_request
from ..llm.reasoning import prompt_opens_reasoning, reasoning_tags
from ..llm.tool_calls import FORMATS, forced_call_schema, offered_tools, tool_names
from .base import LLMEngine

_ABORTED = object()


@dataclass
class _Prepared:
    """A validated request: the sequences to run and how to present their output."""

    request_id: str
    prompts: List[List[int]]
    params: SamplingParams
    budgets: List[int]
    created: int
    reasoning: Optional[Tuple[str, str]] = None
    in_reasoning: bool = False
    tool_format: Optional[str] = None
    tool_names: Optional[Set[str]] = None
    include_usage: bool = False
    grammar: Optional[str] = None

    @property
    def n_choices(self) -> int:
        return len(self.prompts) * self.params.n


def _dtype(name: Optional[str], device: str):
    import torch

    if name in (None, "", "auto"):
        return torch.float32 if device == "cpu" else "auto"
    try:
        return getattr(torch, str(name).replace("torch.", ""))
    except AttributeError:
        raise ModelLaunchError(f"Unknown dtype {name!r}; use float32, bfloat16 or float16",
                               param="dtype") from None


def _domain_error(exc: BaseException) -> BaseException:
    if isinstance(exc, XinferenceError):
        return exc
    return XinferenceError(f"Generation failed: {type(exc).__name__}: {exc}")


def _post(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, index: int, out: Any) -> None:
    loop.call_soon_threadsafe(queue.put_nowait, (index, out))


class TransformersEngine(LLMEngine):
    """Chat and completions on a transformers causal LM; see the module docstring."""

    def __init__(self, config):
        super().__init__(config)
        self.model = None
        self.tokenizer = None
        self.scheduler = None
        self.chat_template: Optional[str] = None
        self.context_length: Optional[int] = None
        self._lock = threading.Lock()
        self._stop_ids: Set[int] = set()
        self._stop_strings: List[str] = []
        self._defaults: Dict[str, Any] = {}
        self._running: Dict[str, Tuple[list, asyncio.Queue]] = {}
        self._grammar: Optional[JsonGrammar] = None
        self.n_threads = int(config.options.get("n_threads") or 1)

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        import torch

        torch.set_num_threads(self.n_threads)
        options = self.config.options
        device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = _dtype(options.get("dtype"), device)
        self.tokenizer, self.model = self._load_weights(device, dtype)
        self.model.eval()
        self.chat_template = choose_chat_template(self.config.family, self.tokenizer.chat_template)
        if self.chat_template:
            try:
                compile_template(self.chat_template)
            except Exception as exc:
                raise ModelLaunchError(
                    f"The model's chat template does not compile: {exc}") from None
        self._read_model_facts()
        vocab = max(len(self.tokenizer), getattr(self.model.config, "vocab_size", 0) or 0)
        self._grammar = JsonGrammar(self.tokenizer, vocab, self._stop_ids)
        from ..llm.batch_scheduler import BatchScheduler

        settings = get_settings()
        self.scheduler = BatchScheduler(self.model, settings.batch_size, settings.batch_interval,
                                        n_threads=self.n_threads, device=device)
        self.scheduler.start()

    def _load_weights(self, device: str, dtype: Any):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        path = self.config.model_path
        remote = bool(self.config.options.get("trust_remote_code"))
        kwargs: Dict[str, Any] = {"trust_remote_code": remote}
        if os.path.isfile(path):
            if not path.lower().endswith(".gguf"):
                raise ModelLaunchError(f"{path} is a file but not a GGUF file", param="model_path")
            kwargs["gguf_file"] = os.path.basename(path)
            path = os.path.dirname(path) or "."
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
        except (OSError, ValueError, ImportError, KeyError) as exc:
            raise ModelLaunchError(f"transformers could not load {self.config.model_path}: {exc}",
                                   param="model_path") from None
        return tokenizer, model.to(device)

    def _read_model_facts(self) -> None:
        tok, gen = self.tokenizer, getattr(self.model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None)
        ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        if tok.eos_token_id is not None:
            ids.add(tok.eos_token_id)
        special = set(tok.all_special_tokens) | {t for t, v in tok.get_added_vocab().items()}
        for text in self.config.family.get("stop") or []:
            if text in special:
                ids.add(tok.convert_tokens_to_ids(text))
            else:
                self._stop_strings.append(text)
        self._stop_ids = {i for i in ids if isinstance(i, int) and i >= 0}
        if gen is not None and getattr(gen, "do_sample", False):
            for key in ("temperature", "top_p", "top_k"):
                if getattr(gen, key, None) is not None:
                    self._defaults[key] = getattr(gen, key)
        self.context_length = (self.config.context_length
                               or self.config.family.get("context_length")
                               or getattr(self.model.config, "max_position_embeddings", None))

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()
            self.scheduler = None
        self.model = None

    def describe(self) -> Dict[str, Any]:
        facts = {"engine": "Transformers", "n_threads": self.n_threads,
                 "context_length": self.context_length, "continuous_batching": True}
        if self.scheduler is not None:
            facts.update(self.scheduler.stats())
        return facts

    # ------------------------------------------------------------- tokenizer
    def _encode(self, text: str, special: bool) -> List[int]:
        with self._lock:
            return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _decode(self, ids: List[int]) -> str:
        with self._lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True,
                                         clean_up_tokenization_spaces=False)

    def _token_text(self, token: int) -> str:
        with self._lock:
            return self.tokenizer.decode([token], skip_special_tokens=False,
                                         clean_up_tokenization_spaces=False)

    # ------------------------------------------------------------- preparing
    def _params(self, request: Dict[str, Any], kind: str) -> SamplingParams:
        cap = get_settings().max_tokens
        params = sampling_params_from_request(request, kind, self._defaults, cap)
        if self._stop_strings:
            params = replace(params, stop=params.stop + self._stop_strings)
        return params

    def _grammar_for(self, request: Dict[str, Any], forced: Optional[tuple]) -> Optional[str]:
        if forced:  # (schema, tool format): tool_choice demands a call
            return self._grammar.compile_calls(*forced)
        schema = response_format_schema(request.get("response_format"))
        return None if schema is None else self._grammar.compile(schema)

    def _prepared(self, request: Dict[str, Any], prompts: List[List[int]], params: SamplingParams,
                  forced: Optional[tuple] = None, **extra: Any) -> _Prepared:
        if self.scheduler is None:
            raise ModelUnavailableError("The model is not loaded (or was stopped)")
        budgets = [params.token_budget(len(p), self.context_length) for p in prompts]
        options = request.get("stream_options") or {}
        return _Prepared(str(request.get("request_id") or P.new_request_id()), prompts, params,
                         budgets, P.now(), include_usage=bool(options.get("include_usage")),
                         grammar=self._grammar_for(request, forced), **extra)

    def _prepare_chat(self, request: Dict[str, Any]) -> _Prepared:
        if not self.chat_template:
            raise InvalidRequestError("This model has no chat template; use /v1/completions",
                                      param="messages")
        tools = offered_tools(request)
        prompt = render_chat_template(self.chat_template, request.get("messages"), tools, True,
                                      special_tokens(self.tokenizer),
                                      template_kwargs(self.config.enable_thinking, request))
        params = self._params(request, "chat")
        tags = reasoning_tags(self.config.family, self.chat_template)
        fmt = self.config.family.get("tool_call_format")
        fmt = fmt if fmt in FORMATS else "auto"
        forced = forced_call_schema(tools, request.get("tool_choice"))
        if forced:  # "required" or a named function: a grammar makes the answer calls
            fmt = "hermes" if fmt == "hermes" else "json"
        return self._prepared(
            request, [self._encode(prompt, special=False)], params, forced and (forced, fmt),
            reasoning=tags, tool_format=fmt if tools else None, tool_names=tool_names(tools),
            in_reasoning=(bool(tags) and prompt_opens_reasoning(prompt, *tags)
                          and not request.get("response_format") and not forced))

    def _prepare_completion(self, request: Dict[str, Any]) -> Tuple[_Prepared, List[str]]:
        prompt = request.get("prompt")
        texts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidRequestError("prompt must be a string or a non-empty list of strings",
                                      param="prompt")
        params = self._params(request, "completion")
        prompts = [self._encode(t, special=True) for t in texts]
        return self._prepared(request, prompts, params), texts

    # ------------------------------------------------------------- generating
    async def _generate(self, prep: _Prepared) -> AsyncIterator[Tuple[int, Any]]:
        """``(choice_index, StepOutput)`` pairs until every choice has finished."""
        from ..llm.batch_scheduler import Sequence

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        seqs = []
        for p, (prompt, budget) in enumerate(zip(prep.prompts, prep.budgets)):
            for c in range(prep.params.n):
                index = p * prep.params.n + c
                constraint = self._grammar.matcher(prep.grammar) if prep.grammar else None
                emit = partial(_post, loop, queue, index)
                seqs.append(Sequence(prompt, prep.params.for_choice(c), budget, self._stop_ids,
                                     self._decode, self._token_text, emit, constraint))
        self._running[prep.request_id] = (seqs, queue)
        scheduler = self.scheduler
        try:
            for seq in seqs:
                scheduler.submit(seq)
            remaining = len(seqs)
            while remaining:
                index, out = await queue.get()
                if out is _ABORTED:
                    raise RequestAbortedError(f"Request {prep.request_id} was aborted")
                if out.error is not None:
                    raise _domain_error(out.error)
                remaining -= out.finish_reason is not None
                yield index, out
        finally:
            self._running.pop(prep.request_id, None)
            for seq in seqs:
                if not seq.done:
                    scheduler.cancel(seq)

    async def abort(self, request_id: str) -> bool:
        entry = self._running.get(request_id)
        if entry is None:
            return False
        seqs, queue = entry
        for seq in seqs:
            self.scheduler.cancel(seq)
        queue.put_nowait((None, _ABORTED))
        return True

    # ------------------------------------------------------------------ chat
    def _assemblers(self, prep: _Prepared) -> List[ChatDeltaAssembler]:
        return [ChatDeltaAssembler(prep.reasoning, prep.in_reasoning, prep.tool_format,
                                   prep.tool_names) for _ in range(prep.n_choices)]

    async def chat(self, request: Dict[str, Any]) -> Dict[str, Any]:
        prep = self._prepare_chat(request)
        assemblers = self._assemblers(prep)
        logprobs: List[list] = [[] for _ in assemblers]
        finish: List[str] = ["stop"] * len(assemblers)
        tokens = 0
        async with contextlib.aclosing(self._generate(prep)) as events:
            async for index, out in events:
                assemblers[index].feed(out.text)
                if out.logprob is not None:
                    logprobs[index].append(out.logprob)
                if out.finish_reason:
                    assemblers[index].finish()
                    finish[index] = out.finish_reason
                    tokens += out.completion_tokens
        choices = [P.chat_choice(i, a.message(), a.finish_reason(finish[i]),
                                 P.chat_logprobs(logprobs[i]) if prep.params.logprobs else None)
                   for i, a in enumerate(assemblers)]
        return P.chat_completion(P.chat_id(prep.request_id), self.config.model_uid, choices,
                                 P.usage(len(prep.prompts[0]), tokens), prep.created)

    def chat_stream(self, request: Dict[str, Any]) -> AsyncIterator[Dict[str, Any]]:
        """Validates at once (bad requests raise here), then streams chunks."""
        return self._chat_chunks(self._prepare_chat(request))

    async def _chat_chunks(self, prep: _Prepared) -> AsyncIterator[Dict[str, Any]]:
        id_, uid = P.chat_id(prep.request_id), self.config.model_uid
        chunk = partial(P.chat_chunk, id_, uid, prep.created, with_usage_field=prep.include_usage)
        assemblers = self._assemblers(prep)
        pending: List[list] = [[] for _ in assemblers]
        def lp(i: int):
            return P.chat_logprobs(pending[i]) if prep.params.logprobs and pending[i] else None

        for i in range(len(assemblers)):
            yield chunk(i, {"role": "assistant", "content": ""})
        tokens = 0
        async with contextlib.aclosing(self._generate(prep)) as events:
            async for index, out in events:
                if out.logprob is not None:
                    pending[index].append(out.logprob)
                deltas = assemblers[index].feed(out.text)
                if out.finish_reason:
                    deltas += assemblers[index].finish()
                for delta in deltas:
                    yield chunk(index, delta, logprobs=lp(index))
                    pending[index] = []
                if out.finish_reason:
                    tokens += out.completion_tokens
                    reason = assemblers[index].finish_reason(out.finish_reason)
                    yield chunk(index, {}, finish_reason=reason, logprobs=lp(index))
        if prep.include_usage:
            yield P.chat_usage_chunk(id_, uid, prep.created, P.usage(len(prep.prompts[0]), tokens))

    # ----------------------------------------------------------- completions
    async def complete(self, request: Dict[str, Any]) -> Dict[str, Any]:
        prep, texts = self._prepare_completion(request)
        echo = bool(request.get("echo"))
        parts: List[List[str]] = [[] for _ in range(prep.n_choices)]
        logprobs: List[list] = [[] for _ in parts]
        finish: List[str] = ["stop"] * len(parts)
        tokens = 0
        async with contextlib.aclosing(self._generate(prep)) as events:
            async for index, out in events:
                parts[index].append(out.text)
                if out.logprob is not None:
                    logprobs[index].append(out.logprob)
                if out.finish_reason:
                    finish[index], tokens = out.finish_reason, tokens + out.completion_tokens
        choices = []
        for i, pieces in enumerate(parts):
            head = texts[i // prep.params.n] if echo else ""
            lps = P.completion_logprobs(logprobs[i], len(head)) if prep.params.logprobs else None
            choices.append(P.completion_choice(i, head + "".join(pieces), finish[i], lps))
        return P.completion(P.completion_id(prep.request_id), self.config.model_uid, choices,
                            P.usage(sum(map(len, prep.prompts)), tokens), prep.created)

    def complete_stream(self, request: Dict[str, Any]) -> AsyncIterator[Dict[str, Any]]:
        """Validates at once (bad requests raise here), then streams chunks."""
        prep, texts = self._prepare_completion(request)
        return self._completion_chunks(prep, texts, bool(request.get("echo")))

    async def _completion_chunks(self, prep: _Prepared, texts: List[str],
                                 echo: bool) -> AsyncIterator[Dict[str, Any]]:
        id_, uid = P.completion_id(prep.request_id), self.config.model_uid
        offsets = [0] * prep.n_choices
        if echo:
            for i in range(prep.n_choices):
                head = texts[i // prep.params.n]
                offsets[i] = len(head)
                choice = P.completion_choice(i, head, None)
                yield P.completion(id_, uid, [choice], None, prep.created)
        tokens = 0
        async with contextlib.aclosing(self._generate(prep)) as events:
            async for index, out in events:
                lps = None
                if prep.params.logprobs and out.logprob is not None:
                    lps = P.completion_logprobs([out.logprob], offsets[index])
                offsets[index] += len(out.text)
                if out.text or lps or out.finish_reason:
                    choice = P.completion_choice(index, out.text, out.finish_reason, lps)
                    yield P.completion(id_, uid, [choice], None, prep.created)
                tokens += out.completion_tokens if out.finish_reason else 0
        if prep.include_usage:
            usage = P.usage(sum(map(len, prep.prompts)), tokens)
            yield P.completion(id_, uid, [], usage, prep.created)
