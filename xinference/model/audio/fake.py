"""The audio type's fake engine for the in-process API tests: deterministic and instant.

It "hears" an uploaded file that is UTF-8 text as that text (anything else as
``"<n> bytes of audio"``), one segment per sentence and half a second per word, so
the API's formats and checks can be tested without a model. It "speaks" a quiet
440 Hz tone, 0.1 s per word and one piece per sentence. It keeps every request it
is given (``requests``). Options: ``delay_per_piece`` (seconds before each spoken
piece; default 0), ``fail_after`` (speech raises after that many pieces) and ``voices``
(comma-separated; default ``fake``).
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any, AsyncIterator, Dict, List

from ...errors import InvalidRequestError
from ..operations import Operation
from .interface import (Segment, SpeechToTextEngine, TextToSpeechEngine, TranscriptStream,
                        Word, engine_option)

_SENTENCE = re.compile(r"[^.!?]+[.!?]*")
_WORD_SECONDS = 0.5


def _sentences(text: str) -> List[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


class FakeAudioEngine(SpeechToTextEngine, TextToSpeechEngine):
    """Speech to text and text to speech without a model."""

    capabilities = frozenset({Operation.TRANSCRIBE, Operation.TRANSLATE, Operation.SPEECH,
                              Operation.ABORT})
    sample_rate = 16000

    def __init__(self, config):
        super().__init__(config)
        self.requests: List[Dict[str, Any]] = []
        self.delay = engine_option(self, "delay_per_piece", 0.0, kind=float, minimum=0)
        self.voices = str(config.options.get("voices") or "fake").split(",")
        self.fail_after = config.options.get("fail_after")

    def load(self) -> None:
        pass

    async def start_transcript(self, request: Dict[str, Any],
                               task: str = "transcribe") -> TranscriptStream:
        self.requests.append(request)
        data: bytes = request["file"]
        try:
            heard = data.decode("utf-8")
        except UnicodeDecodeError:
            heard = f"{len(data)} bytes of audio."
        if task == "translate":
            heard = f"[en] {heard}"
        sentences = _sentences(heard)
        duration = _WORD_SECONDS * sum(len(s.split()) for s in sentences)
        with_words = "word" in (request.get("timestamp_granularities") or [])
        return TranscriptStream(request.get("language") or "english", duration,
                                self._segments(sentences, with_words))

    async def _segments(self, sentences: List[str], with_words: bool
                        ) -> AsyncIterator[Segment]:
        clock = 0.0
        for sentence in sentences:
            words = []
            for word in sentence.split():
                words.append(Word(" " + word, clock, clock + _WORD_SECONDS))
                clock += _WORD_SECONDS
            yield Segment(words[0].start, clock, " " + sentence,
                          words=words if with_words else [])

    def check_speech(self, request: Dict[str, Any]) -> None:
        voice = request.get("voice")
        if voice and voice not in self.voices:
            raise InvalidRequestError(f"`voice` {voice!r} is not a voice of this model; use "
                                      f"{', '.join(self.voices)}", param="voice")

    async def synthesize(self, request: Dict[str, Any]) -> AsyncIterator[Any]:
        import numpy as np

        self.check_speech(request)
        self.requests.append(request)
        stop = self._started(request)
        try:
            for index, sentence in enumerate(_sentences(request["input"])):
                if self.fail_after is not None and index >= int(self.fail_after):
                    raise RuntimeError("the fake voice broke down")
                if self.delay:
                    await asyncio.sleep(self.delay)
                self.check_stop(stop)
                n = int(0.1 * len(sentence.split()) * self.sample_rate
                        / float(request.get("speed") or 1.0))
                t = np.arange(n, dtype=np.float32) / self.sample_rate
                yield (0.1 * np.sin(2 * math.pi * 440.0 * t)).astype(np.float32)
        finally:
            self._finished(request)
