"""Speech to text with transformers' Whisper (``WhisperForConditionalGeneration``), on CPU.

The audio is cut into Whisper's 30-second windows, each decoded on its own and
answered as one segment (its window's times). ``temperature`` 0 decodes greedily,
any other value samples at it; ``prompt`` conditions the decoding; ``language`` and
translation need a multilingual model (its generation config lists the languages).
Word timings are not produced: asking for them is a 400.

Engine options: ``n_threads`` (torch threads, default 1), ``max_new_tokens`` per
window (default 224).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Dict, List

from ...errors import InvalidRequestError
from ..operations import Operation
from . import codec
from .family import verify_files
from .interface import Segment, SpeechToTextEngine, TranscriptStream, engine_option
from .protocol import language_name

_RATE = 16000
_WINDOW = 30 * _RATE


class TransformersWhisperEngine(SpeechToTextEngine):
    """OpenAI ``/v1/audio/transcriptions`` (and translations, multilingual models only)."""

    def __init__(self, config):
        super().__init__(config)
        self.n_threads = engine_option(self, "n_threads", 1, minimum=1)
        self.max_new_tokens = engine_option(self, "max_new_tokens", 224, minimum=1)
        self._model: Any = None
        self._processor: Any = None
        self.languages: List[str] = ["en"]

    def load(self) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        verify_files(self.config.model_path, self.config.family)
        torch.set_num_threads(self.n_threads)
        self._processor = WhisperProcessor.from_pretrained(self.config.model_path)
        model = WhisperForConditionalGeneration.from_pretrained(self.config.model_path)
        self._model = model.eval()
        generation = model.generation_config
        if getattr(generation, "is_multilingual", False) and getattr(generation, "lang_to_id",
                                                                      None):
            self.languages = sorted(code.strip("<|>") for code in generation.lang_to_id)
            self.capabilities = SpeechToTextEngine.capabilities | {Operation.TRANSLATE}

    def describe(self) -> Dict[str, Any]:
        return {"n_threads": self.n_threads, "multilingual": len(self.languages) > 1}

    def close(self) -> None:
        self._model = self._processor = None

    def _generate_kwargs(self, request: Dict[str, Any], task: str) -> Dict[str, Any]:
        if "word" in (request.get("timestamp_granularities") or []):
            raise InvalidRequestError("The transformers Whisper engine gives no word timings; "
                                      "ask for segment timestamps only",
                                      param="timestamp_granularities[]")
        language = request.get("language")
        if language is not None and language not in self.languages:
            raise InvalidRequestError(f"`language` {language!r} is not one this model hears "
                                      f"({', '.join(self.languages[:20])})", param="language")
        kwargs: Dict[str, Any] = {"max_new_tokens": self.max_new_tokens}
        if len(self.languages) > 1:
            kwargs["task"] = task
            if language:
                kwargs["language"] = language
        temperature = float(request.get("temperature") or 0.0)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature)
        if request.get("prompt"):
            kwargs["prompt_ids"] = self._processor.get_prompt_ids(request["prompt"],
                                                                  return_tensors="pt")
        return kwargs

    async def start_transcript(self, request: Dict[str, Any],
                               task: str = "transcribe") -> TranscriptStream:
        kwargs = self._generate_kwargs(request, task)
        audio = await asyncio.to_thread(codec.decode, request["file"], _RATE)
        if len(self.languages) > 1 and "language" not in kwargs:
            kwargs["language"] = await asyncio.to_thread(self._detect, audio[:_WINDOW])
        return TranscriptStream(language_name(kwargs.get("language") or "en"),
                                len(audio) / _RATE, self._windows(request, audio, kwargs))

    async def _windows(self, request: Dict[str, Any], audio: Any,
                       kwargs: Dict[str, Any]) -> AsyncIterator[Segment]:
        """One segment per 30 s window, decoded when pulled; an abort stops between them."""
        stop = self._started(request)
        try:
            for start in range(0, max(len(audio), 1), _WINDOW):
                self.check_stop(stop)
                window = audio[start:start + _WINDOW]
                text, tokens = await asyncio.to_thread(self._decode, window, kwargs)
                yield Segment(start / _RATE, (start + len(window)) / _RATE, text, tokens=tokens)
        finally:
            self._finished(request)

    def _features(self, window: Any) -> Any:
        return self._processor.feature_extractor(window, sampling_rate=_RATE,
                                                 return_tensors="pt").input_features

    def _detect(self, window: Any) -> str:
        """The language code Whisper hears in ``window`` (e.g. ``en``)."""
        import torch

        with torch.inference_mode():
            token = int(self._model.detect_language(self._features(window))[0])
        return self._processor.tokenizer.convert_ids_to_tokens(token).strip("<|>")

    def _decode(self, window: Any, kwargs: Dict[str, Any]):
        import torch

        features = self._features(window)
        with torch.inference_mode():
            ids = self._model.generate(features, **kwargs)[0]
        text = self._processor.tokenizer.decode(ids, skip_special_tokens=True)
        special = set(self._processor.tokenizer.all_special_ids)
        return text, [int(i) for i in ids if int(i) not in special]
