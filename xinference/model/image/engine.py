"""The image type's engine interface and what its engines produce.

An image engine takes the canonical request of :mod:`.params` (a dict; the engine
validates it again) and answers with :class:`GeneratedImages`: PNG bytes, one per
image, in order. The serving module (:mod:`.serving`) turns them into OpenAI's
``{"created", "data": [{"b64_json"}]}``; the gateway turns ``b64_json`` into URLs
when the client asked for ``response_format=url``.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, Dict, List

from ..engines.base import Engine
from ..operations import Operation


@dataclass
class GeneratedImages:
    """The images of one request, as PNG files' bytes, in order."""

    images: List[bytes]
    created: int = field(default_factory=lambda: int(time.time()))


class ImageEngine(Engine):
    """Text to image, image to image and inpainting (OpenAI ``/v1/images/*``).

    An engine that cannot do one of the three for the loaded model raises
    :class:`~xinference.errors.InvalidRequestError` saying why (e.g. inpainting on a
    model without an inpainting UNet).
    """

    model_type = "image"
    capabilities = frozenset({Operation.TEXT_TO_IMAGE, Operation.IMAGE_TO_IMAGE,
                              Operation.INPAINT, Operation.ABORT})

    @abstractmethod
    async def text_to_image(self, request: Dict[str, Any]) -> GeneratedImages:
        """``n`` images drawn from ``prompt``."""

    @abstractmethod
    async def image_to_image(self, request: Dict[str, Any]) -> GeneratedImages:
        """``n`` images made from ``image`` (PNG/JPEG bytes) guided by ``prompt``."""

    @abstractmethod
    async def inpaint(self, request: Dict[str, Any]) -> GeneratedImages:
        """``n`` images: ``image`` with the white (or transparent) part of ``mask`` redrawn."""
