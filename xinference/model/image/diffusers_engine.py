"""Stable Diffusion (and other diffusers pipelines) on CPU, batched across requests.

Loading: ``AutoPipelineForText2Image.from_pretrained(folder)``; the image-to-image
pipeline is made from it with ``AutoPipelineForImage2Image.from_pipe`` (same
weights), and the inpainting one with ``AutoPipelineForInpainting.from_pipe`` when
the UNet is an inpainting UNet (9 input channels: latents, mask, masked image). A
plain UNet (4 channels) does text to image and image to image; an inpainting UNet
only inpaints. Each refusal is a 400 that says which UNet the model has.

Batching: every image of every request is one item of a
:class:`~xinference.model.batching.DynamicBatcher`; its worker thread groups the
items it gathered by what one pipeline call must share (operation, size, steps,
guidance, strength) and runs each group as one call, with one prompt and one seeded
generator per image, cut so that a call's pixels stay within the budget of
``XINFERENCE_TEXT_TO_IMAGE_BATCHING_SIZE`` (default 1024*1024). ``describe()``
counts the calls and the largest batch, and each call that merges requests logs
one line.

Engine options (``EngineConfig.options``): ``n_threads`` (torch threads, default 1),
``batch_images`` (images gathered per batching window, default 16),
``batch_interval`` (seconds the window stays open for more requests, default 0.05).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, Tuple

from ...errors import InvalidRequestError, ModelLaunchError, RequestAbortedError
from ..batching import DynamicBatcher
from ..engines.base import EngineConfig
from ..operations import Operation
from . import pictures
from .engine import GeneratedImages, ImageEngine

logger = logging.getLogger(__name__)

DEFAULT_BATCH_IMAGES = 16
DEFAULT_BATCH_INTERVAL = 0.05
_ABILITY = {Operation.TEXT_TO_IMAGE: "text2image", Operation.IMAGE_TO_IMAGE: "image2image",
            Operation.INPAINT: "inpainting"}
_DEFAULT_STRENGTH = {Operation.IMAGE_TO_IMAGE: 0.8, Operation.INPAINT: 1.0}


def _quiet_progress_bars() -> None:
    """No loading bars in the model process's log (its only engine is this one)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


@dataclass
class _Item:
    """One image to make: its request's settings, its own prompt and seed."""

    operation: Operation
    request_id: str
    prompt: str
    negative_prompt: Optional[str]
    width: int
    height: int
    steps: Optional[int]
    guidance: Optional[float]
    strength: Optional[float]
    seed: int
    image: Any = None
    mask: Any = None

    @property
    def key(self) -> Tuple[Any, ...]:
        """What every image of one pipeline call shares."""
        return (self.operation, self.width, self.height, self.steps, self.guidance,
                self.strength)


class DiffusersImageEngine(ImageEngine):
    """OpenAI ``/v1/images/*`` on a diffusers pipeline folder, on CPU."""

    def __init__(self, config: EngineConfig):
        super().__init__(config)
        self._pipes: Dict[Operation, Any] = {}
        self._batcher: Optional[DynamicBatcher] = None
        self._in_channels: Optional[int] = None
        self._default_size = (512, 512)
        self._budget = 1024 * 1024
        self._running: Dict[str, asyncio.Task] = {}
        self._aborted: Set[str] = set()
        self._stats_lock = threading.Lock()
        self.stats = {"pipeline_calls": 0, "images": 0, "largest_batch": 0,
                      "merged_calls": 0}

    def load(self) -> None:
        import torch
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

        from ...settings import get_settings
        from ..engines.st_common import set_torch_threads

        self.n_threads = set_torch_threads(self.config.options)
        _quiet_progress_bars()
        self._budget = get_settings().text_to_image_pixel_budget
        try:
            pipe = AutoPipelineForText2Image.from_pretrained(self.config.model_path,
                                                             dtype=torch.float32)
        except Exception as exc:
            raise ModelLaunchError(f"diffusers could not load {self.config.model_path!r} as a "
                                   f"text-to-image pipeline: {exc}") from exc
        unet = getattr(pipe, "unet", None)
        self._in_channels = int(unet.config.in_channels) if unet is not None else None
        scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
        sample = getattr(unet.config, "sample_size", None) if unet is not None else None
        if isinstance(sample, int):
            self._default_size = (sample * scale, sample * scale)
        if self._in_channels == 9:
            from diffusers import AutoPipelineForInpainting

            self._pipes[Operation.INPAINT] = AutoPipelineForInpainting.from_pipe(pipe)
        else:
            self._pipes[Operation.TEXT_TO_IMAGE] = pipe
            self._pipes[Operation.IMAGE_TO_IMAGE] = AutoPipelineForImage2Image.from_pipe(pipe)
        for each in self._pipes.values():
            each.set_progress_bar_config(disable=True)
        self._batcher = self._make_batcher()

    def _make_batcher(self) -> DynamicBatcher:
        options = self.config.options
        try:
            size = int(options.get("batch_images") or DEFAULT_BATCH_IMAGES)
            wait = float(options.get("batch_interval", DEFAULT_BATCH_INTERVAL))
        except (TypeError, ValueError):
            raise InvalidRequestError("batch_images must be a whole number and batch_interval "
                                      "seconds", param="batch_images") from None
        if size < 1 or wait < 0:
            raise InvalidRequestError("batch_images must be at least 1 and batch_interval at "
                                      "least 0", param="batch_images")
        return DynamicBatcher(self._run_batch, max_batch_size=size, max_wait=wait,
                              name=f"image-{self.config.model_uid}")

    def describe(self) -> Dict[str, Any]:
        with self._stats_lock:
            stats = dict(self.stats)
        return {"n_threads": getattr(self, "n_threads", 1), "pixel_budget": self._budget,
                "unet_in_channels": self._in_channels,
                "default_size": "%dx%d" % self._default_size,
                "batch_images": self._batcher.max_batch_size if self._batcher else None,
                **stats}

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
        self._pipes = {}

    async def text_to_image(self, request: Dict[str, Any]) -> GeneratedImages:
        return await self._generate(Operation.TEXT_TO_IMAGE, request)

    async def image_to_image(self, request: Dict[str, Any]) -> GeneratedImages:
        return await self._generate(Operation.IMAGE_TO_IMAGE, request)

    async def inpaint(self, request: Dict[str, Any]) -> GeneratedImages:
        return await self._generate(Operation.INPAINT, request)

    async def abort(self, request_id: str) -> bool:
        """Drop a request's images that have not started; a running batch finishes."""
        task = self._running.get(request_id)
        if task is None or task.done():
            return False
        self._aborted.add(request_id)
        task.cancel()
        return True

    def _check_ability(self, operation: Operation) -> None:
        name = self.config.model_name or self.config.model_uid
        abilities = (self.config.family or {}).get("model_ability") or []
        if abilities and _ABILITY[operation] not in abilities:
            raise InvalidRequestError(
                f"{name} is registered with the abilities {', '.join(abilities)}, not "
                f"{_ABILITY[operation]}", param="model")
        if operation in self._pipes:
            return
        if operation == Operation.INPAINT:
            has = ("has no UNet" if self._in_channels is None
                   else f"'s UNet has {self._in_channels}")
            raise InvalidRequestError(
                f"{name} cannot inpaint: inpainting needs a UNet with 9 input channels "
                f"(an inpainting model) and this model{has}", param="mask")
        raise InvalidRequestError(
            f"{name} has an inpainting UNet (9 input channels): it only inpaints; send an "
            "image and a mask to /v1/images/edits", param="model")

    def _items(self, operation: Operation, request: Dict[str, Any]) -> List[_Item]:
        from .params import parse_request

        req = parse_request(request, prompt_required=operation != Operation.IMAGE_TO_IMAGE)
        image = mask = None
        size = (req["width"], req["height"])
        if operation == Operation.TEXT_TO_IMAGE:
            if req["strength"] is not None:
                raise InvalidRequestError("`strength` is how much of an input image to redraw; "
                                          "drawing from a prompt has none", param="strength")
            size = self._default_size if size[0] is None else size
        else:
            picture = pictures.decode(req.get("image"), "image")
            size = pictures.fitted_size(picture) if size[0] is None else size
            image = pictures.as_rgb(picture, size)
            if operation == Operation.INPAINT:
                mask = pictures.as_mask(pictures.decode(req.get("mask"), "mask"), size)
        steps, strength = req["num_inference_steps"], req["strength"]
        if operation in _DEFAULT_STRENGTH and steps is not None:
            if int(steps * (strength or _DEFAULT_STRENGTH[operation])) < 1:
                raise InvalidRequestError(
                    f"num_inference_steps={steps} with strength "
                    f"{strength or _DEFAULT_STRENGTH[operation]} leaves no denoising step; "
                    "raise either", param="num_inference_steps")
        seed = req["seed"] if req["seed"] is not None else random.randrange(2**31)
        return [_Item(operation, str(req.get("request_id") or ""), req["prompt"],
                      req["negative_prompt"], size[0], size[1], steps,
                      req["guidance_scale"], strength, seed + i, image, mask)
                for i in range(req["n"])]

    async def _generate(self, operation: Operation, request: Dict[str, Any]) -> GeneratedImages:
        if self._batcher is None:
            raise InvalidRequestError("the image model is not loaded")
        self._check_ability(operation)
        if operation == Operation.TEXT_TO_IMAGE:
            items = self._items(operation, request)
        else:  # decoding and resizing uploads is off the event loop
            items = await asyncio.to_thread(self._items, operation, request)
        request_id = items[0].request_id
        task = asyncio.ensure_future(self._batcher.submit(items))
        if request_id:
            self._running[request_id] = task
        try:
            return GeneratedImages(await task)
        except asyncio.CancelledError:
            if request_id in self._aborted:
                raise RequestAbortedError(f"request {request_id} was aborted") from None
            raise
        finally:
            if request_id:
                self._running.pop(request_id, None)
                self._aborted.discard(request_id)

    # The batcher's worker thread from here on.

    def _run_batch(self, items: List[_Item]) -> List[bytes]:
        """PNGs for ``items``, in order: one pipeline call per group of shared settings,
        each within the pixel budget."""
        groups: Dict[Tuple[Any, ...], List[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(item.key, []).append(index)
        out: List[Optional[bytes]] = [None] * len(items)
        for indices in groups.values():
            for chunk in self._chunks(indices, items[indices[0]]):
                for index, png in zip(chunk, self._call([items[i] for i in chunk])):
                    out[index] = png
        return out  # type: ignore[return-value]

    def _chunks(self, indices: List[int], first: _Item) -> List[List[int]]:
        per_call = max(1, self._budget // (first.width * first.height))
        return [indices[i:i + per_call] for i in range(0, len(indices), per_call)]

    def _call(self, items: List[_Item]) -> List[bytes]:
        import torch

        first = items[0]
        kwargs: Dict[str, Any] = {
            "prompt": [item.prompt for item in items],
            "generator": [torch.Generator().manual_seed(item.seed) for item in items],
            "output_type": "pil",
        }
        if any(item.negative_prompt for item in items):
            kwargs["negative_prompt"] = [item.negative_prompt or "" for item in items]
        for name, value in (("num_inference_steps", first.steps),
                            ("guidance_scale", first.guidance), ("strength", first.strength)):
            if value is not None:
                kwargs[name] = value
        if first.operation != Operation.IMAGE_TO_IMAGE:
            kwargs.update(width=first.width, height=first.height)
        if first.operation != Operation.TEXT_TO_IMAGE:
            kwargs["image"] = [item.image for item in items]
        if first.operation == Operation.INPAINT:
            kwargs["mask_image"] = [item.mask for item in items]
        with torch.inference_mode():
            result = self._pipes[first.operation](**kwargs)
        self._count(items)
        return pictures.png_bytes(result.images)

    def _count(self, items: List[_Item]) -> None:
        requests = len({item.request_id for item in items})
        with self._stats_lock:
            self.stats["pipeline_calls"] += 1
            self.stats["images"] += len(items)
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(items))
            if requests > 1:
                self.stats["merged_calls"] += 1
        if requests > 1:
            first = items[0]
            logger.info("image batch: %d images from %d requests in one %s call (%dx%d)",
                        len(items), requests, first.operation.value, first.width, first.height)
