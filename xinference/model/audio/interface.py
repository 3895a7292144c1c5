"""The audio engines' interfaces and the typed results they produce.

A speech-to-text engine turns the bytes of an audio file into a :class:`Transcript`
(text, segments, words, all timed in seconds); a text-to-speech engine turns text
into float32 mono samples at its ``sample_rate``, one array per piece (sentence) as
soon as each is ready. The serving module (:mod:`.serving`) turns both into the wire
answers; engines never format subtitles or encode mp3.

Requests are the validated OpenAI bodies (``file`` holds the uploaded bytes for the
speech-to-text operations). Both kinds stop a request between pieces when it is
aborted (:meth:`AudioEngine.abort`) or its caller goes away.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, AsyncGenerator, AsyncIterator, Dict, List, Optional

from ...errors import RequestAbortedError
from ..engines.base import Engine
from ..operations import Operation


@dataclass
class Word:
    """One word and when it is said (seconds from the start)."""

    word: str
    start: float
    end: float


@dataclass
class Segment:
    """One stretch of speech: its text, its times, and what Whisper tells of its quality."""

    start: float
    end: float
    text: str
    tokens: List[int] = field(default_factory=list)
    temperature: Optional[float] = None     # None: the engine does not report it
    avg_logprob: Optional[float] = None
    compression_ratio: Optional[float] = None
    no_speech_prob: Optional[float] = None
    words: List[Word] = field(default_factory=list)


@dataclass
class Transcript:
    """What a speech-to-text engine heard: the text, its language, the audio's duration."""

    text: str
    language: str
    duration: float
    segments: List[Segment] = field(default_factory=list)

    @property
    def words(self) -> List[Word]:
        return [word for segment in self.segments for word in segment.words]


def joined_text(texts: List[str]) -> str:
    """The transcript's text from its segments' texts (one space between segments)."""
    return " ".join(text.strip() for text in texts if text.strip())


@dataclass
class TranscriptStream:
    """A transcription under way: what is known at once, then its segments as they come."""

    language: str
    duration: float
    segments: AsyncGenerator[Segment, None]


class AudioEngine(Engine):
    """Base of the audio engines: the type's name and the running-request bookkeeping."""

    model_type = "audio"
    capabilities = frozenset({Operation.ABORT})

    def __init__(self, config):
        super().__init__(config)
        self._running: Dict[str, threading.Event] = {}

    def _started(self, request: Dict[str, Any]) -> threading.Event:
        """The stop flag of a request that starts now (set by :meth:`abort`)."""
        stop = threading.Event()
        request_id = str(request.get("request_id") or "")
        if request_id:
            self._running[request_id] = stop
        return stop

    def _finished(self, request: Dict[str, Any]) -> None:
        self._running.pop(str(request.get("request_id") or ""), None)

    @staticmethod
    def check_stop(stop: threading.Event) -> None:
        """Raise :class:`RequestAbortedError` if the request was stopped."""
        if stop.is_set():
            raise RequestAbortedError("the request was aborted")

    async def abort(self, request_id: str) -> bool:
        stop = self._running.get(request_id)
        if stop is None:
            return False
        stop.set()
        return True


class SpeechToTextEngine(AudioEngine):
    """``/v1/audio/transcriptions`` and, for multilingual models, ``/v1/audio/translations``.

    ``capabilities`` holds :attr:`Operation.TRANSLATE` only when the loaded model
    can translate (an English-only Whisper cannot).
    """

    capabilities = frozenset({Operation.TRANSCRIBE, Operation.ABORT})

    @abstractmethod
    async def start_transcript(self, request: Dict[str, Any],
                               task: str = "transcribe") -> TranscriptStream:
        """Check the request and decode ``request["file"]`` (a bad one raises here), then
        return the transcription's stream of segments, each decoded as it is pulled.
        ``task`` is ``transcribe`` or ``translate`` (into English). Honours ``language``,
        ``prompt``, ``temperature`` and ``timestamp_granularities`` (``word`` asks for word
        timings); a value the engine cannot honour is a 400 naming it."""

    async def transcribe(self, request: Dict[str, Any], task: str = "transcribe") -> Transcript:
        """The whole transcript of ``request["file"]`` (see :meth:`start_transcript`)."""
        started = await self.start_transcript(request, task)
        try:
            segments = [segment async for segment in started.segments]
        finally:
            await started.segments.aclose()
        return Transcript(joined_text([s.text for s in segments]), started.language,
                          started.duration, segments)


class TextToSpeechEngine(AudioEngine):
    """``/v1/audio/speech``: ``input`` spoken in ``voice`` at ``speed``."""

    capabilities = frozenset({Operation.SPEECH, Operation.ABORT})
    sample_rate: int = 24000

    @abstractmethod
    def check_speech(self, request: Dict[str, Any]) -> None:
        """Raise a 400 naming the field for a request this engine cannot speak
        (an unknown voice, ...), before any audio is made."""

    @abstractmethod
    def synthesize(self, request: Dict[str, Any]) -> AsyncIterator[Any]:
        """float32 mono sample arrays at :attr:`sample_rate`, one per piece of ``input``."""


def engine_option(engine: Engine, key: str, default: Any, kind: type = int,
                  minimum: Optional[float] = None) -> Any:
    """An engine option (strings from the CLI accepted), checked: a bad one fails the load."""
    from ...errors import InvalidRequestError

    raw = engine.config.options.get(key, default)
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"Option {key!r} must be a {kind.__name__}, got {raw!r}",
                                  param=key) from None
    if minimum is not None and value < minimum:
        raise InvalidRequestError(f"Option {key!r} must be at least {minimum}, got {raw!r}",
                                  param=key)
    return value
