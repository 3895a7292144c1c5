"""Text to speech with hibari: a small neural English voice on onnxruntime, 24 kHz.

The ``hibari-tts`` package ships one voice (``heart``) inside the wheel; its other
voices are downloaded on first use, which this server never does: asking for one is
a 400 that says so. ``input`` is spoken sentence by sentence, so a streamed answer
starts after the first sentence; ``speed`` scales the pace (1.0 is the voice's own).

Engine options: ``n_threads`` (onnxruntime threads, default 1).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, AsyncIterator, Dict, List

from ...errors import InvalidRequestError
from .family import verify_files
from .interface import TextToSpeechEngine, engine_option

_MODEL_FILE = "hibari.onnx"


class HibariEngine(TextToSpeechEngine):
    """OpenAI ``/v1/audio/speech`` with hibari's bundled voice."""

    def __init__(self, config):
        super().__init__(config)
        self.n_threads = engine_option(self, "n_threads", 1, minimum=1)
        self.voices: List[str] = list(config.family.get("voices") or ["heart"])
        self._tts: Any = None
        self._g2p_lock = threading.Lock()

    def load(self) -> None:
        from hibari import SAMPLE_RATE, Hibari

        verify_files(self.config.model_path, self.config.family)
        path = self.config.model_path
        model = os.path.join(path, _MODEL_FILE) if os.path.isdir(path) else path
        self._tts = Hibari(voice=self.voices[0], model=model, threads=self.n_threads)
        self.sample_rate = int(SAMPLE_RATE)
        self._tts.phonemize("Ready.")  # loads the lexicons now, not on the first request

    def describe(self) -> Dict[str, Any]:
        return {"n_threads": self.n_threads, "voices": self.voices,
                "sample_rate": self.sample_rate}

    def close(self) -> None:
        self._tts = None

    def check_speech(self, request: Dict[str, Any]) -> None:
        voice = request.get("voice")
        if voice and voice not in self.voices:
            from hibari.voices import VOICES

            why = ("is one hibari downloads on first use, and this server downloads no "
                   "voices" if voice in VOICES else "is not a voice of this model")
            raise InvalidRequestError(f"`voice` {voice!r} {why}; use "
                                      f"{', '.join(self.voices)}", param="voice")
        if request.get("instructions"):
            raise InvalidRequestError("`instructions` are not followed by this voice model; "
                                      "leave them out", param="instructions")

    def _phonemes(self, text: str) -> List[str]:
        with self._g2p_lock:
            return self._tts.phonemize(text)

    async def synthesize(self, request: Dict[str, Any]) -> AsyncIterator[Any]:
        self.check_speech(request)
        speed = float(request.get("speed") or 1.0)
        stop = self._started(request)
        try:
            sentences = await asyncio.to_thread(self._phonemes, request["input"])
            if not sentences:
                raise InvalidRequestError("`input` has nothing this voice can speak",
                                          param="input")
            for phonemes in sentences:
                self.check_stop(stop)
                ids = self._tts.ids(phonemes)
                yield await asyncio.to_thread(self._tts.from_ids, ids, speed)
        finally:
            self._finished(request)
