"""Pictures in and out of the image engines: decode uploads, masks, encode PNGs (Pillow)."""

from __future__ import annotations

import io
from typing import Any, List, Tuple

from ...errors import InvalidRequestError
from .params import MAX_SIDE, SIDE_MULTIPLE

# An upload may be larger than what we generate (it is resized), but not unboundedly.
MAX_INPUT_SIDE = 2 * MAX_SIDE


def decode(data: Any, param: str) -> Any:
    """The uploaded file ``data`` (PNG, JPEG, WebP ... bytes) as a Pillow image."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray)) or not data:
        raise InvalidRequestError(f"`{param}` is required: an image file", param=param)
    try:
        picture = Image.open(io.BytesIO(data))
        if max(picture.size) > MAX_INPUT_SIDE:
            raise InvalidRequestError(
                f"`{param}` is {picture.size[0]}x{picture.size[1]}; the largest side accepted "
                f"is {MAX_INPUT_SIDE} pixels", param=param)
        picture.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidRequestError(f"`{param}` is not an image file Pillow can read ({exc})",
                                  param=param) from None
    return picture


def fitted_size(picture: Any) -> Tuple[int, int]:
    """The picture's size rounded down to multiples of 8 within the output bounds."""
    sides = []
    for side in picture.size:
        side = min(side, MAX_SIDE) // SIDE_MULTIPLE * SIDE_MULTIPLE
        sides.append(max(side, SIDE_MULTIPLE))
    return sides[0], sides[1]


def as_rgb(picture: Any, size: Tuple[int, int]) -> Any:
    """RGB at ``size`` (width, height)."""
    picture = picture.convert("RGB")
    return picture if picture.size == size else picture.resize(size)


def as_mask(picture: Any, size: Tuple[int, int]) -> Any:
    """The mask as diffusers wants it: white is redrawn, black is kept.

    A mask with transparency follows OpenAI's rule instead: the transparent pixels
    are the ones to redraw.
    """
    from PIL import Image

    if picture.mode in ("RGBA", "LA") or "transparency" in picture.info:
        alpha = picture.convert("RGBA").getchannel("A")
        if alpha.getextrema()[0] < 255:
            mask = alpha.point(lambda a: 255 if a == 0 else 0)
            return mask.resize(size) if mask.size != size else mask
    mask = picture.convert("L")
    return mask if mask.size == size else mask.resize(size, Image.NEAREST)


def png_bytes(pictures: List[Any]) -> List[bytes]:
    out = []
    for picture in pictures:
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out

