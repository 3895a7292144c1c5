"""OpenAI's audio endpoints: transcriptions, translations (multipart uploads) and speech.

Each route checks its input here (sizes, formats, ranges: a 400 naming the field),
then sends one call to the model. Transcripts come back as JSON, or as text and
subtitles; speech comes back as the bytes of the audio file, whole or streamed as
it is spoken (see :mod:`.serve`, ``media_type``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from fastapi import APIRouter, Request
from pydantic import Field, field_validator

from ..errors import InvalidRequestError
from ..model.audio import protocol as audio
from ..model.operations import InferenceCall, Operation
from .schemas import _Open, engine_request
from .serve import respond

router = APIRouter()

# OpenAI form fields this server does not serve: refused rather than ignored.
_UNSUPPORTED_FIELDS = ("include[]", "include", "chunking_strategy", "known_speaker_names[]",
                       "known_speaker_references[]")
_MULTIPART_SLACK = 64 * 1024


class SpeechRequest(_Open):
    model: str = Field(min_length=1)
    input: str = Field(min_length=1, max_length=audio.MAX_SPEECH_CHARS)
    voice: Optional[str] = None
    response_format: str = "mp3"
    speed: float = Field(default=1.0, ge=audio.MIN_SPEED, le=audio.MAX_SPEED)
    stream: bool = False
    stream_format: Optional[str] = None
    instructions: Optional[str] = None

    @field_validator("response_format")
    @classmethod
    def _check_format(cls, value: str) -> str:
        if value not in audio.SPEECH_FORMATS:
            raise ValueError(f"{value!r} is not an audio format this server writes; use one "
                             f"of {', '.join(audio.SPEECH_FORMATS)}")
        return value

    @field_validator("stream_format")
    @classmethod
    def _check_stream_format(cls, value: Optional[str]) -> Optional[str]:
        if value not in (None, "audio"):
            raise ValueError(f"{value!r} is not served; speech streams as raw audio "
                             "(`audio`)")
        return value


@router.post("/v1/audio/speech")
async def speech(body: SpeechRequest, request: Request):
    payload = engine_request(body)
    payload.pop("stream_format", None)
    call = InferenceCall(Operation.SPEECH, payload, stream=body.stream)
    return await respond(request, body.model, call,
                         media_type=audio.SPEECH_MEDIA_TYPES[body.response_format])


@router.post("/v1/audio/transcriptions")
async def transcriptions(request: Request):
    return await _transcript(request, Operation.TRANSCRIBE)


@router.post("/v1/audio/translations")
async def translations(request: Request):
    return await _transcript(request, Operation.TRANSLATE)


async def _transcript(request: Request, operation: Operation):
    body = await _read_form(request)
    if body["stream"]:  # server-sent transcript.text.delta / .done events
        return await respond(request, body["model"], InferenceCall(operation, body, stream=True))
    return await respond(request, body["model"], InferenceCall(operation, body),
                         media_type=audio.TRANSCRIPT_MEDIA_TYPES[body["response_format"]])


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


async def _read_form(request: Request) -> Dict[str, Any]:
    """The multipart form as the engine's request: ``file`` bytes and the checked fields."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > audio.MAX_UPLOAD_BYTES + \
            _MULTIPART_SLACK:
        raise _too_large()
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise _bad("Send the audio as multipart/form-data with a `file` part", "file")
    try:
        form = await request.form(max_files=1, max_fields=32)
    except Exception as exc:  # noqa: BLE001 - a malformed body is the client's to fix
        raise _bad(f"The multipart body could not be read: {exc}", "file") from None
    try:
        return await _fields(form)
    finally:
        await form.close()


def _too_large() -> InvalidRequestError:
    limit = audio.MAX_UPLOAD_BYTES // (1024 * 1024)
    return _bad(f"`file` is larger than {limit} MB; send a shorter or more compressed "
                "recording", "file")


async def _fields(form: Any) -> Dict[str, Any]:
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise _bad("`file` is required: the audio file to transcribe", "file")
    data = await upload.read(audio.MAX_UPLOAD_BYTES + 1)
    if len(data) > audio.MAX_UPLOAD_BYTES:
        raise _too_large()
    if not data:
        raise _bad("`file` is empty", "file")
    for name in _UNSUPPORTED_FIELDS:
        if form.get(name) is not None:
            raise _bad(f"`{name}` is not supported by this server's speech-to-text models",
                       name)
    body: Dict[str, Any] = {"model": _text(form, "model", required=True), "file": data,
                            "filename": upload.filename or "audio",
                            "response_format": _text(form, "response_format") or "json"}
    if body["response_format"] not in audio.TRANSCRIPT_FORMATS:
        raise _bad(f"`response_format` {body['response_format']!r} is not one of "
                   f"{', '.join(audio.TRANSCRIPT_FORMATS)}", "response_format")
    for key in ("language", "prompt"):
        value = _text(form, key)
        if value:
            body[key] = value
    if len(body.get("prompt", "")) > audio.MAX_PROMPT_CHARS:
        raise _bad(f"`prompt` is longer than {audio.MAX_PROMPT_CHARS} characters", "prompt")
    body["temperature"] = _temperature(_text(form, "temperature"))
    body["timestamp_granularities"] = _granularities(form, body["response_format"])
    body["stream"] = _flag(_text(form, "stream"), "stream")
    if body["stream"] and body["response_format"] not in audio.STREAMED_TRANSCRIPT_FORMATS:
        raise _bad("A streamed transcript is a stream of text events: use `response_format` "
                   "json or text, or leave `stream` unset", "response_format")
    return body


def _flag(raw: Optional[str], key: str) -> bool:
    value = (raw or "false").strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise _bad(f"`{key}` must be true or false, got {raw!r}", key)
    return value in ("true", "1")


def _text(form: Any, key: str, required: bool = False) -> Optional[str]:
    value = form.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(f"`{key}` must be a text field, not a file", key)
    if required and not value:
        raise _bad(f"`{key}` is required", key)
    return value


def _temperature(raw: Optional[str]) -> float:
    if raw in (None, ""):
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise _bad(f"`temperature` must be a number, got {raw!r}", "temperature") from None
    if not 0.0 <= value <= 1.0:
        raise _bad(f"`temperature` must be between 0 and 1, got {value}", "temperature")
    return value


def _granularities(form: Any, response_format: str) -> List[str]:
    values = [*form.getlist("timestamp_granularities[]"),
              *form.getlist("timestamp_granularities")]
    out = []
    for value in values:
        if value not in audio.GRANULARITIES:
            raise _bad(f"`timestamp_granularities[]` has {value!r}; use segment or word",
                       "timestamp_granularities[]")
        if value not in out:
            out.append(value)
    if out and response_format != "verbose_json":
        raise _bad("`timestamp_granularities[]` needs `response_format` verbose_json",
                   "timestamp_granularities[]")
    return out
