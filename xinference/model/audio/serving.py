"""Serving of the audio type: engine results -> the answers of OpenAI's audio API.

Transcriptions and translations answer a dict (``json``, ``verbose_json``) or the
UTF-8 bytes of ``text``, ``srt`` or ``vtt``; streamed, OpenAI's text events, one delta
per segment as the engine decodes it. Speech answers the bytes of the audio
file, whole, or (``stream=true``) as a stream of its bytes piece by piece, each
encoded as soon as the engine has spoken it. Bytes answers are sent to the client as
they are (the replica service passes bytes through; the route sets the media type).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Dict, List, Union

from ...errors import InvalidRequestError
from ..operations import InferenceCall, Operation
from . import codec
from .interface import joined_text
from .protocol import STREAMED_TRANSCRIPT_FORMATS, TRANSCRIPT_FORMATS
from .transcript_formats import render

_TASKS = {Operation.TRANSCRIBE: "transcribe", Operation.TRANSLATE: "translate"}


def granularities(body: Dict[str, Any]) -> List[str]:
    """The request's ``timestamp_granularities`` (``segment`` / ``word``)."""
    return list(body.get("timestamp_granularities") or [])


async def answer(engine: Any, call: InferenceCall) -> Union[Dict[str, Any], bytes]:
    """The whole answer to a transcription, translation or speech call."""
    body = call.body
    if call.operation in _TASKS:
        task = _TASKS[call.operation]
        response_format = body.get("response_format") or "json"
        if response_format not in TRANSCRIPT_FORMATS:
            raise InvalidRequestError(
                f"`response_format` {response_format!r} is not one of "
                f"{', '.join(TRANSCRIPT_FORMATS)}", param="response_format")
        transcript = await engine.transcribe(body, task)
        return render(transcript, response_format, task, granularities(body))
    if call.operation == Operation.SPEECH:
        import numpy as np

        response_format = codec.check_format(body.get("response_format") or "mp3")
        engine.check_speech(body)
        pieces = [piece async for piece in engine.synthesize(body)]
        samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        return await asyncio.to_thread(codec.encode, samples, engine.sample_rate,
                                       response_format)
    raise InvalidRequestError(f"{call.operation.label} is not an operation of audio models")


def stream(engine: Any, call: InferenceCall) -> AsyncIterator[Any]:
    """Speech as the bytes of its audio file, piece by piece; a transcript as OpenAI's
    ``transcript.text.delta`` events, one per segment, then ``transcript.text.done``.
    A bad request raises here or at the first pull, before anything is sent."""
    if call.operation in _TASKS:
        if (call.body.get("response_format") or "json") not in STREAMED_TRANSCRIPT_FORMATS:
            raise InvalidRequestError(
                "A streamed transcript is a stream of text events: use `response_format` "
                "json or text, or leave `stream` unset", param="response_format")
        return _transcript_events(engine, call.body, _TASKS[call.operation])
    if call.operation != Operation.SPEECH:
        raise InvalidRequestError(f"{call.operation.label} answers cannot be streamed",
                                  param="stream")
    body = call.body
    encoder = codec.StreamEncoder(engine.sample_rate, body.get("response_format") or "mp3")
    try:
        engine.check_speech(body)
    except BaseException:
        encoder.close()
        raise
    return _encoded(engine.synthesize(body), encoder)


async def _encoded(pieces: AsyncIterator[Any], encoder: codec.StreamEncoder
                   ) -> AsyncIterator[bytes]:
    try:
        async for samples in pieces:
            data = await asyncio.to_thread(encoder.feed, samples)
            if data:
                yield data
        tail = await asyncio.to_thread(encoder.finish)
        if tail:
            yield tail
    finally:
        encoder.close()
        aclose = getattr(pieces, "aclose", None)
        if aclose is not None:
            await aclose()


async def _transcript_events(engine: Any, body: Dict[str, Any], task: str
                             ) -> AsyncIterator[Dict[str, Any]]:
    started = await engine.start_transcript(body, task)
    texts: List[str] = []
    try:
        async for segment in started.segments:
            piece = segment.text.strip()
            if piece:
                yield {"type": "transcript.text.delta",
                       "delta": piece if not texts else " " + piece}
                texts.append(piece)
    finally:  # a client that left stops the decoding now, not when this is collected
        await started.segments.aclose()
    yield {"type": "transcript.text.done", "text": joined_text(texts)}
