"""Engine-independent pieces of LLM serving (see docs/llm-protocol-notes.md).

- :mod:`.chat_template`: render a model's Jinja chat template (tools, ``chat_template_kwargs``).
- :mod:`.params`: OpenAI request -> :class:`~.params.SamplingParams`.
- :mod:`.stop`: stop strings that are never emitted, across streamed pieces.
- :mod:`.reasoning`: ``<think>...</think>`` -> ``reasoning_content``.
- :mod:`.tool_calls`: Hermes/Qwen ``<tool_call>`` and plain-JSON tool calls.
- :mod:`.assembler`: text pieces -> OpenAI chat deltas and the final message.
- :mod:`.protocol`: builders of OpenAI response and chunk dicts.
- :mod:`.detokenize`: token ids -> text pieces, one token at a time.

Torch-only modules, imported by the transformers engine alone:
:mod:`.torch_sampling` and :mod:`.batch_scheduler` (continuous batching).
Importing this package imports neither torch nor jinja2.
"""
