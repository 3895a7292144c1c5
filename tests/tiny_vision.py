"""A tiny Llava built on the spot: the vision model no package ships, for the vision tests.

:func:`build_tiny_llava` writes a Hugging Face folder that ``AutoProcessor`` and
``AutoModelForImageTextToText`` load: a random ``LlavaForConditionalGeneration`` (CLIP
vision tower of 32 hidden units on 32x32 pixels in 8x8 patches, a 2-layer Llama of 32
hidden units), the byte-level BPE tokenizer of :mod:`tiny_models` plus an ``<image>``
token, a PIL CLIP image processor and a ChatML template that writes ``<image>`` for each
image part. Each image becomes :data:`IMAGE_TOKENS` tokens of the prompt.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import os
from pathlib import Path

_spec = importlib.util.spec_from_file_location("tiny_models",
                                               Path(__file__).parent / "llm" / "tiny_models.py")
tm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tm)

IMAGE_TOKENS = 16  # (32 / 8) ** 2 patches; the CLS feature is dropped ("default" strategy)

VISION_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message.role + '\\n' -}}"
    "{%- if message.content is string -%}{{- message.content -}}"
    "{%- else -%}{%- for part in message.content -%}"
    "{%- if part.type == 'image' -%}{{- '<image>\\n' -}}{%- else -%}{{- part.text -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def png_bytes(color=(200, 30, 30), size=(40, 24)) -> bytes:
    """A small PNG of one colour."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_message(text: str, url: str) -> dict:
    """A user message with a text part and an ``image_url`` part."""
    return {"role": "user", "content": [{"type": "text", "text": text},
                                        {"type": "image_url", "image_url": {"url": url}}]}


def build_tiny_llava(path: str, seed: int = 0) -> str:
    """Write the tiny Llava folder at ``path`` and return ``path``."""
    import torch
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, GenerationConfig,
                              LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor)

    torch.manual_seed(seed)
    tokenizer = tm.build_tokenizer()
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    tokenizer.chat_template = VISION_TEMPLATE
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, image_size=32, patch_size=8,
                              projection_dim=32)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=512, eos_token_id=im_end,
                       pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-1)
    model = LlavaForConditionalGeneration(config)
    model.generation_config = GenerationConfig(eos_token_id=[im_end],
                                               pad_token_id=tokenizer.pad_token_id)
    images = CLIPImageProcessorPil(size={"shortest_edge": 32},
                                   crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default",
                               chat_template=VISION_TEMPLATE, num_additional_image_tokens=1)
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
