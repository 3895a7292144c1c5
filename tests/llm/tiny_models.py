"""Tiny Qwen2-style models built on the spot, for tests that need a model no package ships.

:func:`build_tiny_qwen2` writes a Hugging Face folder: a byte-level BPE
tokenizer trained on a small corpus, a ChatML chat template that renders tools
and honours ``enable_thinking``, and a 2-layer Qwen2 with random weights. With
``train=True`` the weights are then fitted (a few hundred Adam steps, a few
seconds) to answer the :data:`LESSONS` conversations exactly, reasoning and
tool calls included, so greedy decoding of those prompts is predictable.
Prompts are rendered with transformers' own ``apply_chat_template``, which
makes the lessons an independent check of our template renderer too.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

CHATML_TOOLS_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and tools -%}"
    "{{- '<|im_start|>system\\n' -}}"
    "{%- if message.role == 'system' -%}{{- message.content + '\\n\\n' -}}{%- endif -%}"
    "{{- 'You may call these tools:\\n<tools>\\n' -}}"
    "{%- for tool in tools -%}{{- tool | tojson -}}{{- '\\n' -}}{%- endfor -%}"
    "{{- '</tools>\\nAnswer a call as "
    "<tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>.<|im_end|>\\n' -}}"
    "{%- if message.role == 'system' -%}{%- continue -%}{%- endif -%}"
    "{%- endif -%}"
    "{%- if message.role == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' + (message.content or '') -}}"
    "{%- for call in message.tool_calls or [] -%}"
    "{{- '<tool_call>\\n' -}}"
    "{%- set args = call.function.arguments -%}"
    "{{- '{\"name\": \"' + call.function.name + '\", \"arguments\": ' -}}"
    "{{- (args if args is string else args | tojson) + '}' -}}"
    "{{- '\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- elif message.role == 'tool' -%}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message.content"
    " + '\\n</tool_response><|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and not enable_thinking -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TAG_TOKENS = ["<think>", "</think>", "<tool_call>", "</tool_call>",
              "<tool_response>", "</tool_response>"]

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_CALL = {"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}
WEATHER_FOLLOWUP = WEATHER + [
    {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 C"},
]

THOUGHT_FRANCE = "The user asks for the capital of France."
ANSWER_FRANCE = "The capital of France is Paris."
THOUGHT_WEATHER = "I should call the weather tool."
ANSWER_WEATHER = "It is sunny in Paris, 24 C."

# (messages, tools, chat_template_kwargs, target text the model must produce)
LESSONS: List[tuple] = [
    (FRANCE, None, {}, f"<think>\n{THOUGHT_FRANCE}\n</think>\n\n{ANSWER_FRANCE}<|im_end|>"),
    (FRANCE, None, {"enable_thinking": False}, f"{ANSWER_FRANCE}<|im_end|>"),
    (WEATHER, [WEATHER_TOOL], {},
     f"<think>\n{THOUGHT_WEATHER}\n</think>\n\n<tool_call>\n"
     "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>"),
    (WEATHER_FOLLOWUP, [WEATHER_TOOL], {"enable_thinking": False}, f"{ANSWER_WEATHER}<|im_end|>"),
]


def _corpus() -> List[str]:
    texts = [json.dumps(WEATHER_TOOL), CHATML_TOOLS_TEMPLATE]
    for messages, _, _, target in LESSONS:
        texts += [m.get("content") or "" for m in messages] + [target]
    texts += ["Once upon a time there was a tiny model that liked to talk about the weather."]
    return texts * 4


def build_tokenizer(corpus: Optional[List[str]] = None, vocab_size: int = 600):
    """A byte-level BPE tokenizer trained on ``corpus``, with ChatML special tokens and the
    template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus or _corpus(), trainer)
    bpe.add_tokens(TAG_TOKENS)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML_TOOLS_TEMPLATE
    return tokenizer


def _lesson_batch(tokenizer):
    import torch

    rows, labels = [], []
    for messages, tools, kwargs, target in LESSONS:
        prompt = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                               tokenize=False, **kwargs)
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        t_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
        rows.append(p_ids + t_ids)
        labels.append([-100] * len(p_ids) + t_ids)
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    lab = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
    return ids, mask, lab


def _fit(model, tokenizer, max_steps: int = 600):
    import torch

    ids, mask, labels = _lesson_batch(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    loss = float("inf")
    steps = 0
    for _ in range(max_steps):
        steps += 1
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        loss = float(out.loss.detach())
        if loss < 0.005:
            break
    model.eval()
    return loss, steps


def build_tiny_qwen2(path: str, train: bool = False, hidden: int = 64, layers: int = 2,
                     seed: int = 0, max_position: int = 512) -> Dict[str, Any]:
    """Write a tiny Qwen2 folder at ``path``; returns facts (``path``, ``loss`` when trained)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden,
                         intermediate_size=hidden * 2, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=max_position, tie_word_embeddings=True,
                         eos_token_id=im_end, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=None)
    model = Qwen2ForCausalLM(config)
    facts: Dict[str, Any] = {"path": path}
    if train:
        facts["loss"], facts["steps"] = _fit(model, tokenizer)
    model.generation_config = GenerationConfig(
        eos_token_id=[im_end, tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id)
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return facts
