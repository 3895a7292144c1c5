"""``response_format`` (``json_object``, ``json_schema``) as a token-level constraint.

:func:`response_format_schema` validates OpenAI's ``response_format`` and
returns the JSON schema to enforce (``None`` for plain text). :class:`JsonGrammar`
compiles schemas with ``llguidance`` against one tokenizer and hands out one
matcher per sequence; engines mask each step's logits with
:meth:`JsonGrammar.allowed` and advance the matcher with ``consume_token``.
The output then always parses and validates (unless cut by ``max_tokens``).
``llguidance`` is imported only when a request asks for a format.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Iterable, Mapping, Optional

from ...errors import InvalidRequestError
from .tool_calls import HERMES_CLOSE, HERMES_OPEN

# An answer's JSON may be laid out as the model likes (one line or indented, as
# llama.cpp's JSON grammars allow); forcing one layout pushes a model off its path.
# Tool calls keep the one-line layout chat templates write them in.
JSON_WHITESPACE = r" ?|\n{1,2}[ \t]{0,20}"
_JSON_OPTIONS = {"whitespace_pattern": JSON_WHITESPACE, "lenient": True}
_CALL_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ",
                 "lenient": True}


def response_format_schema(response_format: Any) -> Optional[dict]:
    """The JSON schema a ``response_format`` asks for; None for ``text`` or no format."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise InvalidRequestError(
                "response_format.json_schema.schema must be a JSON schema object",
                param="response_format")
        return dict(schema)
    raise InvalidRequestError("response_format.type must be text, json_object or json_schema",
                              param="response_format")


class JsonGrammar:
    """Schema compiler bound to one Hugging Face fast tokenizer (thread-safe, built lazily)."""

    def __init__(self, hf_tokenizer: Any, vocab_size: int, eos_ids: Iterable[int]):
        self._hf = hf_tokenizer
        self.vocab_size = vocab_size
        self._eos = sorted(eos_ids)
        self._tokenizer = None
        self._lock = threading.Lock()

    def _ll_tokenizer(self):
        with self._lock:
            if self._tokenizer is None:
                try:
                    import llguidance.hf
                except ImportError:
                    raise InvalidRequestError(
                        "response_format needs the llguidance package on this engine: "
                        "pip install llguidance", param="response_format") from None
                self._tokenizer = llguidance.hf.from_tokenizer(
                    self._hf, n_vocab=self.vocab_size, eos_token=self._eos or None)
            return self._tokenizer

    def compile(self, schema: Mapping[str, Any], param: str = "response_format",
                options: Mapping[str, Any] = _JSON_OPTIONS) -> str:
        """A checked grammar for ``schema``; bad schemas give :class:`InvalidRequestError`.

        ``options`` are llguidance's JSON options; the default lets the model
        put bounded whitespace (spaces, line breaks, indents) between tokens.
        """
        from llguidance import LLMatcher

        return self._checked(lambda: LLMatcher.grammar_from_json_schema(
            json.dumps(schema), defaults=dict(options)), param)

    def compile_calls(self, schema: Mapping[str, Any], fmt: str) -> str:
        """A grammar that makes the answer the tool calls ``schema`` describes.

        ``schema`` comes from :func:`~.tool_calls.forced_call_schema`. With the
        ``hermes`` format the calls are written the model's own way, each
        ``<tool_call>\\n{json}\\n</tool_call>`` (the tags as their single tokens
        when the vocabulary has them); otherwise the answer is the plain JSON.
        """
        if fmt != "hermes":
            return self.compile(schema, param="tools", options=_CALL_OPTIONS)
        from llguidance import LLMatcher

        many = schema.get("type") == "array"
        call = dict(schema["items"] if many else schema, **{"x-guidance": _CALL_OPTIONS})
        start = 'start: call ("\\n" call)*' if many else "start: call"
        tags = f'{self._literal(HERMES_OPEN)} "\\n" obj "\\n" {self._literal(HERMES_CLOSE)}'
        lark = f"{start}\ncall: {tags}\nobj: %json {json.dumps(call)}\n"
        return self._checked(lambda: LLMatcher.grammar_from_lark(lark), "tools")

    def _literal(self, text: str) -> str:
        """A tag as its own token when the tokenizer has one (``<[id]>``), else as text."""
        token_id = self._hf.get_added_vocab().get(text)
        return f"<[{token_id}]>" if token_id is not None else json.dumps(text)

    def _checked(self, build, param: str) -> str:
        tokenizer = self._ll_tokenizer()
        from llguidance import LLMatcher

        try:
            grammar = build()
        except ValueError as exc:
            raise InvalidRequestError(f"{param} schema is not valid: {exc}", param=param) from None
        failed, messages = LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)
        if failed:
            raise InvalidRequestError(f"{param} schema cannot be enforced: {messages[0]}",
                                      param=param)
        return grammar

    def matcher(self, grammar: str):
        """A fresh matcher for one sequence (``consume_token``, ``is_error``, ...)."""
        from llguidance import LLMatcher

        return LLMatcher(self._ll_tokenizer(), grammar, log_level=0)

    @staticmethod
    def allowed(matcher: Any) -> bytes:
        """One byte per token id: non-zero where the token may come next."""
        return matcher.compute_logit_bias()
