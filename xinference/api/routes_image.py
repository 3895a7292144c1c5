"""OpenAI's image endpoints, for models of type ``image``.

``POST /v1/images/generations`` (JSON) draws from a prompt; ``/v1/images/variations``
and ``/v1/images/edits`` (multipart, as the OpenAI SDK sends them) start from an
uploaded image, and an edit with a ``mask`` inpaints; ``/v1/images/inpainting`` is
Xinference's client's spelling of an edit (``image`` + ``mask_image``). Each body is
checked here (:mod:`xinference.model.image.params`) before it travels, and is at most
``XINFERENCE_IMAGE_REQUEST_MAX_BYTES`` (413 past it).

Replicas answer with base64 PNGs; for ``response_format=url`` (the default) the
gateway keeps the PNGs in its :class:`~.image_store.ImageStore` and answers with URLs
under ``GET /v1/images/files/{id}``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Dict, List, Optional

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ..errors import InvalidRequestError
from ..model.image.params import parse_request, response_format
from ..model.operations import InferenceCall, Operation
from .image_store import ImageStore
from .serve import OPENAI, gateway_of, unless_client_leaves

router = APIRouter()

FILES_PATH = "/v1/images/files"
_IMAGE_FIELDS = ("image", "image[]", "images", "images[]")
_MASK_FIELDS = ("mask", "mask_image")
_MAX_FORM_FIELDS = 64
_MAX_FORM_FILES = 4


class PayloadTooLargeError(InvalidRequestError):
    """A request body over the image routes' size limit (HTTP 413)."""

    status_code = 413


async def _read_body(request: Request) -> None:
    """Read the body, refusing it past the limit; later reads (json, form) reuse it."""
    limit = gateway_of(request).settings.image_request_max_bytes
    too_large = PayloadTooLargeError(
        f"The request body is larger than {limit} bytes, the limit of the image endpoints "
        "(XINFERENCE_IMAGE_REQUEST_MAX_BYTES)", param="image")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: List[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    request._body = b"".join(chunks)  # what Request.body(), json() and form() read


def image_store(request: Request) -> ImageStore:
    """The app's store of images served by URL, made on first use."""
    state = request.app.state
    store = getattr(state, "image_store", None)
    if store is None:
        settings = gateway_of(request).settings
        store = state.image_store = ImageStore(settings.image_url_ttl,
                                               settings.image_url_store_max_bytes)
    return store


async def _form_fields(request: Request) -> Dict[str, Any]:
    """The multipart body as a dict: text fields as strings, ``image``/``mask`` as bytes."""
    form = await request.form(max_files=_MAX_FORM_FILES, max_fields=_MAX_FORM_FIELDS)
    try:
        return await _fields_of(form)
    finally:
        await form.close()


async def _fields_of(form: Any) -> Dict[str, Any]:
    fields: Dict[str, Any] = {}
    images: List[bytes] = []
    masks: List[bytes] = []
    for key in set(form.keys()):
        values = form.getlist(key)
        target = images if key in _IMAGE_FIELDS else masks if key in _MASK_FIELDS else None
        if target is not None:
            for value in values:
                target.append(await value.read() if isinstance(value, UploadFile)
                              else str(value).encode())
            continue
        if len(values) > 1 or isinstance(values[0], UploadFile):
            raise InvalidRequestError(f"`{key}` must be one text field", param=key)
        fields[key] = values[0]
    for name, found in (("image", images), ("mask", masks)):
        if len(found) > 1:
            raise InvalidRequestError(f"Send one `{name}`; {len(found)} were sent and these "
                                      "models edit one image at a time", param=name)
        if found:
            fields[name] = found[0]
    return fields


async def _json_fields(request: Request) -> Dict[str, Any]:
    try:
        body = json.loads(request._body or b"null")
    except ValueError as exc:
        raise InvalidRequestError(f"The body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("The body must be a JSON object")
    return body


async def _images(request: Request, operation: Operation, fields: Dict[str, Any]) -> Response:
    """Check ``fields``, run the call on the model and answer in the asked format."""
    model = fields.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("`model` is required: the uid of a running image model",
                                  param="model")
    fmt = response_format(fields)
    body = parse_request(fields, prompt_required=operation != Operation.IMAGE_TO_IMAGE)
    if operation != Operation.TEXT_TO_IMAGE and not body.get("image"):
        raise InvalidRequestError("`image` is required: the image file to start from",
                                  param="image")
    if operation == Operation.INPAINT and not body.get("mask"):
        raise InvalidRequestError("`mask` is required to inpaint", param="mask")
    body["request_id"] = body.get("request_id") or uuid.uuid4().hex
    call = InferenceCall(operation, body)
    try:
        result = await unless_client_leaves(request, gateway_of(request).call(model, call))
    except Exception as exc:  # noqa: BLE001 - the one error mapping answers it
        return OPENAI.error_response(exc)
    if not isinstance(result, bytes):
        return Response(status_code=499)
    if fmt == "b64_json":
        return Response(result, media_type="application/json")
    return Response(_as_urls(request, result), media_type="application/json")


def _as_urls(request: Request, result: bytes) -> bytes:
    """The replica's base64 answer with each image kept in the store and given as a URL."""
    import base64

    answer = json.loads(result)
    store = image_store(request)
    base = str(request.base_url).rstrip("/") + FILES_PATH
    answer["data"] = [{"url": f"{base}/{store.put(base64.b64decode(item['b64_json']))}.png"}
                      for item in answer["data"]]
    return json.dumps(answer).encode()


async def _with_body(request: Request, operation: Optional[Operation], form: bool) -> Response:
    try:
        await _read_body(request)
        fields = await (_form_fields(request) if form else _json_fields(request))
        if operation is None:  # an edit: inpainting when a mask came with it
            operation = Operation.INPAINT if fields.get("mask") else Operation.IMAGE_TO_IMAGE
        return await _images(request, operation, fields)
    except (InvalidRequestError, HTTPException) as exc:
        if isinstance(exc, HTTPException):
            exc = InvalidRequestError(f"The form could not be read: {exc.detail}")
        return OPENAI.error_response(exc)


@router.post("/v1/images/generations")
async def generations(request: Request) -> Response:
    return await _with_body(request, Operation.TEXT_TO_IMAGE, form=False)


@router.post("/v1/images/variations")
async def variations(request: Request) -> Response:
    return await _with_body(request, Operation.IMAGE_TO_IMAGE, form=True)


@router.post("/v1/images/edits")
async def edits(request: Request) -> Response:
    return await _with_body(request, None, form=True)


@router.post("/v1/images/inpainting")
async def inpainting(request: Request) -> Response:
    return await _with_body(request, Operation.INPAINT, form=True)


@router.get(FILES_PATH + "/{image_id}")
async def image_file(image_id: str, request: Request) -> Response:
    data = image_store(request).get(image_id.removesuffix(".png"))
    if data is None:
        raise HTTPException(404, f"No image {image_id!r}: image URLs expire after "
                                 f"{gateway_of(request).settings.image_url_ttl:g} seconds")
    return Response(data, media_type="image/png")
