"""Vision chat on the transformers engine: image-text-to-text checkpoints.

When a family has the ``vision`` ability, :class:`~.transformers_llm.TransformersEngine`
loads the folder with ``AutoProcessor`` and ``AutoModelForImageTextToText``
(:func:`load_vision_model`) instead of a tokenizer and a causal LM. A chat is then
rendered with image parts kept as ``{"type": "image"}`` for the template, and
:func:`chat_inputs` gives the processor the rendered prompt and the request's images
(decoded from the data URIs the serving layer left, see :mod:`..llm.images`): the
processor expands each image placeholder into the model's image tokens and makes the
pixel values, which go with the prompt into its prefill (the batch scheduler's
``Sequence.inputs``); decoding then runs as for text, in the same batches.

Checked with Llava-style models (image features merged into the prompt's embeddings,
plain 1-D positions). Models that need their own position scheme for images
(Qwen2-VL's multimodal rotary positions) are not supported by this path.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

from ...errors import InvalidRequestError, ModelLaunchError
from ..llm.images import ImagePolicy, decode_data_uri, image_urls, open_image

_TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def load_vision_model(path: str, dtype: Any, kwargs: Dict[str, Any]) -> Tuple[Any, Any]:
    """``(processor, model)`` of an image-text-to-text folder; ModelLaunchError naming
    what is missing otherwise."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if not os.path.isdir(path):
        raise ModelLaunchError(f"vision models on transformers load from a Hugging Face folder; "
                               f"{path} is not one", param="model_path")
    try:
        processor = AutoProcessor.from_pretrained(path, **kwargs)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, **kwargs)
    except (OSError, ValueError, ImportError, KeyError) as exc:
        raise ModelLaunchError(f"transformers could not load {path} as an image-text-to-text "
                               f"model: {exc}", param="model_path") from None
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None or getattr(processor, "image_processor", None) is None:
        raise ModelLaunchError(f"{path} has no processor with a tokenizer and an image "
                               "processor, which a vision model needs", param="model_path")
    if not getattr(tokenizer, "chat_template", None) and getattr(processor, "chat_template", None):
        tokenizer.chat_template = processor.chat_template
    return processor, model


def request_images(request: Dict[str, Any]) -> List[Any]:
    """The request's images as RGB ``PIL.Image``s, in the order of their parts."""
    limit = ImagePolicy.from_settings().max_bytes
    pictures = []
    for i, url in enumerate(image_urls(request.get("messages"))):
        _, data = decode_data_uri(url, limit, f"image {i}")
        pictures.append(open_image(data, f"image {i}"))
    return pictures


def chat_inputs(processor: Any, prompt: str, pictures: List[Any],
                dtype: Any) -> Dict[str, Any]:
    """The prompt's token ids (``prompts``) and, with ``pictures`` (from
    :func:`request_images`), their model inputs (``inputs``: pixel values and the like,
    floating tensors in ``dtype``)."""
    if not pictures:
        ids = processor.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return {"prompts": [list(ids)]}
    try:
        out = processor(text=[prompt], images=pictures, return_tensors="pt",
                        add_special_tokens=False)
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError(f"The model's processor refused the images: {exc}",
                                  param="messages") from None
    extras = {}
    for key, value in out.items():
        if key in _TEXT_KEYS:
            continue
        if hasattr(value, "is_floating_point") and value.is_floating_point():
            value = value.to(dtype)
        extras[key] = value
    return {"prompts": [out["input_ids"][0].tolist()], "inputs": [extras]}
