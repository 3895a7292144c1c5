"""Images in chat requests: found, checked against the model and the limits, fetched.

Every dialect can carry images: OpenAI ``image_url`` parts, Responses ``input_image``
parts and Anthropic ``image`` blocks (:class:`ImageSlot` reads and rewrites each
shape). Before a chat reaches an engine, :func:`checked_call` finds them all and
refuses, with a 400 naming the part:

- any image, when the model's family has no ``vision`` ability;
- more than ``XINFERENCE_IMAGE_MAX_COUNT`` images in one request;
- a data URI that is not base64 ``image/*`` data, or whose bytes pass
  ``XINFERENCE_IMAGE_MAX_BYTES``, or that Pillow cannot read (when it is installed: the
  transformers and llama_cpp extras bring it), or of more than :data:`MAX_PIXELS` pixels;
- a URL of another scheme, or an http(s) URL whose host is not in
  ``XINFERENCE_IMAGE_FETCH_HOSTS`` (unset: no host, fetching is off).

:func:`fetch_images` then downloads the allowed URLs (no redirects, no proxy from
the environment, at most the byte limit, within ``XINFERENCE_IMAGE_FETCH_TIMEOUT``
seconds each) and puts them back as data URIs, so engines only ever see data URIs
(:func:`image_urls`, :func:`decode_data_uri`, :func:`open_image`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import re
from dataclasses import dataclass, replace
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from ...errors import InvalidRequestError
from ...settings import Settings, get_settings

MAX_PIXELS = 40_000_000  # width x height of one decoded image; past it: a 400
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*),(?P<data>.*)$",
                       re.DOTALL)
_SPACE = re.compile(r"\s+")
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
          (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"), (b"BM", "image/bmp"))
_CONTAINERS = ("messages", "input")


@dataclass(frozen=True)
class ImagePolicy:
    """The limits on the images of one request, and the hosts images may be fetched from."""

    max_bytes: int = 10 << 20
    max_count: int = 8
    fetch_timeout: float = 10.0
    fetch_hosts: FrozenSet[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Optional[Settings] = None) -> "ImagePolicy":
        s = settings or get_settings()
        hosts = frozenset(h.strip().lower() for h in (s.image_fetch_hosts or "").split(",")
                          if h.strip())
        return cls(s.image_max_bytes, s.image_max_count, s.image_fetch_timeout, hosts)

    def host_allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return False
        return bool(host) and (host in self.fetch_hosts or f"{host}:{port}" in self.fetch_hosts)


# ------------------------------------------------------------------------------ finding
@dataclass
class ImageSlot:
    """One image of a request, in its dialect's shape; ``where`` names it in errors."""

    part: Dict[str, Any]
    where: str
    param: str

    @property
    def url(self) -> str:
        kind = self.part.get("type")
        if kind == "image":  # Anthropic: a base64 or url source
            source = self.part.get("source") if isinstance(self.part.get("source"), Mapping) else {}
            if source.get("type") == "base64":
                return f"data:{source.get('media_type') or ''};base64,{source.get('data') or ''}"
            return str(source.get("url") or "")
        value = self.part.get("image_url")
        if isinstance(value, Mapping):
            value = value.get("url")
        return value if isinstance(value, str) else ""

    def set_data(self, mime: str, data: bytes) -> None:
        """Replace the image's URL with the bytes, as a data URI (or a base64 source)."""
        encoded = base64.b64encode(data).decode("ascii")
        if self.part.get("type") == "image":
            self.part["source"] = {"type": "base64", "media_type": mime, "data": encoded}
            return
        uri = f"data:{mime};base64,{encoded}"
        value = self.part.get("image_url")
        self.part["image_url"] = dict(value, url=uri) if isinstance(value, Mapping) else uri


def _is_image(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") in ("image_url", "input_image", "image")


def find_images(body: Mapping[str, Any], history: Sequence[Any] = ()) -> List[ImageSlot]:
    """The image parts of a chat request in any dialect (and of earlier Responses turns)."""
    slots: List[ImageSlot] = []
    lists = [(key, body.get(key)) for key in _CONTAINERS] + [("input", list(history))]
    for key, items in lists:
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            content = item.get("content") if isinstance(item, Mapping) else None
            if not isinstance(content, list):
                continue
            slots.extend(ImageSlot(part, f"{key}[{i}].content[{j}]", key)
                         for j, part in enumerate(content) if _is_image(part))
    return slots


def image_urls(messages: Any) -> List[str]:
    """The URLs of the ``image_url`` parts of OpenAI chat ``messages``, in order."""
    body = {"messages": messages if isinstance(messages, list) else []}
    return [slot.url for slot in find_images(body)]


# ------------------------------------------------------------------------------ checking
def _bad(slot: ImageSlot, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{slot.where}: {message}", param=slot.param)


def decode_data_uri(url: str, max_bytes: int, where: str = "image",
                    param: str = "messages") -> Tuple[str, bytes]:
    """``(mime type, bytes)`` of a base64 ``data:image/...`` URI; a 400 when it is not one or
    holds more than ``max_bytes``."""
    found = _DATA_URI.match(url)
    if found is None or ";base64" not in (found.group("params") or "").lower():
        raise InvalidRequestError(f"{where}: a data URI must be 'data:image/<type>;base64,"
                                  "<data>'", param=param)
    mime = (found.group("mime") or "").lower()
    if not mime.startswith("image/"):
        raise InvalidRequestError(f"{where}: the data URI holds {mime or 'no type'!s}, "
                                  "not an image/* type", param=param)
    data = _SPACE.sub("", found.group("data"))
    if len(data) * 3 // 4 > max_bytes + 2:
        raise InvalidRequestError(f"{where}: the image is larger than {max_bytes} bytes "
                                  "(XINFERENCE_IMAGE_MAX_BYTES)", param=param)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"{where}: the data URI is not valid base64",
                                  param=param) from None
    if not raw or len(raw) > max_bytes:
        size = "empty" if not raw else f"larger than {max_bytes} bytes"
        raise InvalidRequestError(f"{where}: the image is {size}", param=param)
    return mime, raw


def check_pixels(data: bytes, where: str = "image", param: str = "messages") -> None:
    """A 400 unless ``data`` is an image Pillow reads of at most :data:`MAX_PIXELS` pixels
    (only its header is read; nothing is checked without Pillow)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - both engine extras install Pillow
        return
    import io

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception as exc:  # noqa: BLE001 - any failure to read it is the client's image
        raise InvalidRequestError(f"{where}: the image cannot be read: {exc}",
                                  param=param) from None
    if width * height > MAX_PIXELS:
        raise InvalidRequestError(f"{where}: the image has {width}x{height} pixels; at most "
                                  f"{MAX_PIXELS} are allowed", param=param)


def _check_url(slot: ImageSlot, policy: ImagePolicy) -> bool:
    """True if the image must be fetched; a bad or refused URL raises."""
    url = slot.url
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        check_pixels(decode_data_uri(url, policy.max_bytes, slot.where, slot.param)[1],
                     slot.where, slot.param)
        return False
    if scheme not in ("http", "https"):
        raise _bad(slot, "an image must be a data URI or an http(s) URL")
    if not policy.host_allowed(url):
        host = urlsplit(url).hostname or url
        raise _bad(slot, f"this server does not fetch images from {host!r}: send the image as "
                   "a base64 data URI, or ask the operator to allow the host in "
                   "XINFERENCE_IMAGE_FETCH_HOSTS")
    return True


def check_images(slots: Sequence[ImageSlot], model: str, abilities: Sequence[str],
                 policy: ImagePolicy) -> List[ImageSlot]:
    """Refuse what cannot be served (see the module docstring); the slots left to fetch."""
    if not slots:
        return []
    if "vision" not in abilities:
        raise _bad(slots[0], f"model {model!r} cannot read images: its family has no 'vision' "
                   "ability; send text only, or use a vision model")
    if len(slots) > policy.max_count:
        raise InvalidRequestError(f"{len(slots)} images in one request; at most "
                                  f"{policy.max_count} are allowed (XINFERENCE_IMAGE_MAX_COUNT)",
                                  param=slots[0].param)
    return [slot for slot in slots if _check_url(slot, policy)]


def _family_facts(config: Any) -> Tuple[str, List[str]]:
    family = getattr(config, "family", None) or {}
    return str(getattr(config, "model_uid", "")), list(family.get("model_ability") or [])


def checked_call(config: Any, call: Any, policy: Optional[ImagePolicy] = None):
    """``(call, slots to fetch)`` for an engine's ``config``: raises on refused images. A call
    with images comes back as a deep copy (the caller's request is never changed) where
    ``image_url`` given as a bare string is ``{"url": ...}``, as OpenAI's shape has it; the
    slots to fetch are that copy's (fill them with :func:`fetch_images`)."""
    policy = policy or ImagePolicy.from_settings()
    slots = find_images(call.body, (call.context or {}).get("history") or ())
    if not slots:
        return call, []
    model, abilities = _family_facts(config)
    check_images(slots, model, abilities, policy)
    call = replace(call, body=copy.deepcopy(call.body), context=copy.deepcopy(call.context))
    slots = find_images(call.body, (call.context or {}).get("history") or ())
    for slot in slots:
        if slot.part.get("type") == "image_url" and isinstance(slot.part.get("image_url"), str):
            slot.part["image_url"] = {"url": slot.part["image_url"]}
    return call, [s for s in slots if not s.url.lower().startswith("data:")]


# ------------------------------------------------------------------------------ fetching
def _sniff(data: bytes) -> Optional[str]:
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


async def _download(client: Any, slot: ImageSlot, policy: ImagePolicy) -> Tuple[str, bytes]:
    chunks, size = [], 0
    async with client.stream("GET", slot.url) as response:
        if response.is_redirect:
            raise _bad(slot, f"fetching the image was answered with a redirect "
                       f"(HTTP {response.status_code}); redirects are not followed")
        if response.status_code != 200:
            raise _bad(slot, f"fetching the image failed: HTTP {response.status_code}")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > policy.max_bytes:
            raise _bad(slot, f"the image is larger than {policy.max_bytes} bytes "
                       "(XINFERENCE_IMAGE_MAX_BYTES)")
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > policy.max_bytes:
                raise _bad(slot, f"the image is larger than {policy.max_bytes} bytes "
                           "(XINFERENCE_IMAGE_MAX_BYTES)")
            chunks.append(chunk)
        declared_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    data = b"".join(chunks)
    mime = declared_type if declared_type.startswith("image/") else _sniff(data)
    if not data or mime is None:
        raise _bad(slot, f"the URL did not answer with an image ({declared_type or 'no type'})")
    return mime, data


async def _fetch_one(client: Any, slot: ImageSlot, policy: ImagePolicy) -> None:
    import httpx

    try:
        mime, data = await asyncio.wait_for(_download(client, slot, policy),
                                            policy.fetch_timeout)
    except asyncio.TimeoutError:
        raise _bad(slot, f"fetching the image took longer than {policy.fetch_timeout:g} s "
                   "(XINFERENCE_IMAGE_FETCH_TIMEOUT)") from None
    except httpx.HTTPError as exc:
        raise _bad(slot, f"fetching the image failed: {type(exc).__name__}: {exc}") from None
    check_pixels(data, slot.where, slot.param)
    slot.set_data(mime, data)


async def fetch_images(slots: Sequence[ImageSlot], policy: Optional[ImagePolicy] = None) -> None:
    """Download each slot's URL (checked by :func:`check_images`) into a data URI, all at
    once; the first failure is a 400 naming its part."""
    if not slots:
        return
    import httpx

    policy = policy or ImagePolicy.from_settings()
    timeout = httpx.Timeout(policy.fetch_timeout)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                 trust_env=False) as client:
        await asyncio.gather(*(_fetch_one(client, slot, policy) for slot in slots))


# ------------------------------------------------------------------------------ decoding
def open_image(data: bytes, where: str = "image", param: str = "messages") -> Any:
    """The image as an RGB ``PIL.Image``; a 400 when it cannot be read or is too large."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_PIXELS:
            raise InvalidRequestError(f"{where}: the image has {image.width}x{image.height} "
                                      f"pixels; at most {MAX_PIXELS} are allowed", param=param)
        return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidRequestError(f"{where}: the image cannot be read: {exc}",
                                  param=param) from None
