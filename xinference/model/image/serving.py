"""Serving of the image type: an engine's PNGs as OpenAI's images answer.

``answer`` gives ``{"created", "data": [{"b64_json": ...}, ...]}``; image answers are
never streamed, so ``stream`` refuses with a 400.
"""

from __future__ import annotations

import base64
from typing import Any, AsyncIterator, Dict

from ...errors import InvalidRequestError
from ..operations import InferenceCall, Operation
from .engine import GeneratedImages


def images_answer(result: GeneratedImages) -> Dict[str, Any]:
    """OpenAI's images response for ``result``, each image inline as base64 PNG."""
    return {"created": result.created,
            "data": [{"b64_json": base64.b64encode(png).decode("ascii")}
                     for png in result.images]}


async def answer(engine: Any, call: InferenceCall) -> Dict[str, Any]:
    """The ``/v1/images/*`` answer for ``call``."""
    if call.operation == Operation.TEXT_TO_IMAGE:
        result = await engine.text_to_image(call.body)
    elif call.operation == Operation.IMAGE_TO_IMAGE:
        result = await engine.image_to_image(call.body)
    elif call.operation == Operation.INPAINT:
        result = await engine.inpaint(call.body)
    else:
        raise InvalidRequestError(f"{call.operation.label} is not an operation of image models")
    return images_answer(result)


def stream(engine: Any, call: InferenceCall) -> AsyncIterator[Dict[str, Any]]:
    """Image answers are never streamed."""
    raise InvalidRequestError("image answers cannot be streamed", param="stream")
