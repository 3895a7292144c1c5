"""The audio routes in-process, through the ``openai`` SDK and plain HTTP, on the audio
type's fake engine: it hears a UTF-8 upload as that text (one segment per sentence,
half a second per word) and speaks a 440 Hz tone, 0.1 s per word at 16 kHz."""

import io
import wave

import av
import openai
import pytest
from harness import Api

from xinference.model.audio import protocol
from xinference.model.audio.fake import FakeAudioEngine
from xinference.model.engines.base import EngineConfig

SPOKEN = b"Hello there. General Kenobi."


def _fake(uid: str = "voice", **options) -> FakeAudioEngine:
    engine = FakeAudioEngine(EngineConfig(model_uid=uid, model_type="audio", model_name=uid,
                                          engine="fake", model_format="fake", model_path="",
                                          options=options))
    engine.load()
    return engine


@pytest.fixture
async def api(cluster):
    cluster.host(_fake("voice"))
    cluster.host(_fake("slow-voice", delay_per_piece=0.05))
    cluster.host(_fake("broken-voice", fail_after=1))
    async with Api.open(cluster) as api:
        yield api


def _form(**fields):
    return {"model": "voice", **fields}


async def _post_file(api, path="/v1/audio/transcriptions", data=SPOKEN, **fields):
    return await api.http.post(path, data=_form(**fields), files={"file": ("a.wav", data)})


async def test_transcription_json_through_the_sdk(api):
    out = await api.openai.audio.transcriptions.create(model="voice", file=("a.wav", SPOKEN),
                                                       language="en", prompt="names",
                                                       temperature=0.3)
    assert out.text == "Hello there. General Kenobi."
    (request,) = api.cluster.model("voice").requests
    assert request["file"] == SPOKEN and request["language"] == "en"
    assert request["prompt"] == "names" and request["temperature"] == 0.3


async def test_transcription_text_srt_and_vtt(api):
    text = await _post_file(api, response_format="text")
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert text.text == "Hello there. General Kenobi.\n"
    srt = await _post_file(api, response_format="srt")
    assert srt.text == ("1\n00:00:00,000 --> 00:00:01,000\nHello there.\n\n"
                        "2\n00:00:01,000 --> 00:00:02,000\nGeneral Kenobi.\n")
    vtt = await _post_file(api, response_format="vtt")
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text == ("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nHello there.\n\n"
                        "00:00:01.000 --> 00:00:02.000\nGeneral Kenobi.\n")


async def test_verbose_json_segments_and_words(api):
    out = await api.openai.audio.transcriptions.create(
        model="voice", file=("a.wav", SPOKEN), response_format="verbose_json",
        timestamp_granularities=["word", "segment"])
    assert out.language == "english" and out.duration == 2.0
    assert [(s.start, s.end, s.text) for s in out.segments] == [
        (0.0, 1.0, " Hello there."), (1.0, 2.0, " General Kenobi.")]
    assert [(w.word.strip(), w.start, w.end) for w in out.words] == [
        ("Hello", 0.0, 0.5), ("there.", 0.5, 1.0), ("General", 1.0, 1.5),
        ("Kenobi.", 1.5, 2.0)]
    words_only = (await _post_file(api, response_format="verbose_json",
                                   **{"timestamp_granularities[]": "word"})).json()
    assert "segments" not in words_only and len(words_only["words"]) == 4
    plain = (await _post_file(api, response_format="verbose_json")).json()
    assert plain["task"] == "transcribe" and len(plain["segments"]) == 2
    assert "words" not in plain


async def test_translation_through_the_sdk(api):
    out = await api.openai.audio.translations.create(model="voice", file=("a.wav", SPOKEN))
    assert out.text == "[en] Hello there. General Kenobi."
    verbose = (await _post_file(api, "/v1/audio/translations",
                                response_format="verbose_json")).json()
    assert verbose["task"] == "translate"


async def test_streamed_transcript_events_through_the_sdk(api):
    stream = await api.openai.audio.transcriptions.create(
        model="voice", file=("a.wav", SPOKEN + b" Third one."), stream=True)
    events = [event async for event in stream]
    assert [e.type for e in events] == ["transcript.text.delta"] * 3 + ["transcript.text.done"]
    assert "".join(e.delta for e in events[:-1]) == "Hello there. General Kenobi. Third one."
    assert events[-1].text == "Hello there. General Kenobi. Third one."
    raw = await _post_file(api, "/v1/audio/translations", stream="true",
                           response_format="text")
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.endswith("data: [DONE]\n\n") and '"[en]' in raw.text


@pytest.mark.parametrize("fields, param", [
    ({"response_format": "docx"}, "response_format"),
    ({"temperature": "1.5"}, "temperature"),
    ({"temperature": "warm"}, "temperature"),
    ({"timestamp_granularities[]": "word"}, "timestamp_granularities[]"),
    ({"response_format": "verbose_json", "timestamp_granularities[]": "phoneme"},
     "timestamp_granularities[]"),
    ({"include[]": "logprobs"}, "include[]"),
    ({"stream": "maybe"}, "stream"),
    ({"stream": "true", "response_format": "srt"}, "response_format"),
    ({"prompt": "x" * (protocol.MAX_PROMPT_CHARS + 1)}, "prompt"),
])
async def test_bad_transcription_fields_are_400s(api, fields, param):
    resp = await _post_file(api, **fields)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param
    assert api.cluster.model("voice").requests == []


async def test_missing_empty_and_too_large_files_are_400s(api, monkeypatch):
    missing = await api.http.post("/v1/audio/transcriptions", data=_form())
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"
    empty = await _post_file(api, data=b"")
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]
    monkeypatch.setattr(protocol, "MAX_UPLOAD_BYTES", 10)
    big = await _post_file(api, data=b"x" * 11)
    assert big.status_code == 400 and big.json()["error"]["param"] == "file"
    assert "larger than" in big.json()["error"]["message"]
    json_body = await api.http.post("/v1/audio/transcriptions", json={"model": "voice"})
    assert json_body.status_code == 400 and "multipart" in json_body.json()["error"]["message"]


async def test_sdk_sees_openai_errors(api):
    with pytest.raises(openai.BadRequestError) as caught:
        await api.openai.audio.transcriptions.create(model="voice", file=("a.wav", SPOKEN),
                                                     temperature=3)
    assert caught.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        await api.openai.audio.transcriptions.create(model="nobody", file=("a.wav", SPOKEN))


async def test_other_types_refuse_audio_and_audio_refuses_chat(api):
    resp = await api.http.post("/v1/audio/transcriptions", data={"model": "chat"},
                               files={"file": ("a.wav", SPOKEN)})
    assert resp.status_code == 400 and "does not serve transcription" in resp.text
    chat = await api.http.post("/v1/chat/completions", json={
        "model": "voice", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 400 and "does not serve chat" in chat.text


def _decoded_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
        rate = container.streams.audio[0].rate
    return samples / rate


async def test_speech_wav_and_pcm_exact(api):
    resp = await api.http.post("/v1/audio/speech", json={
        "model": "voice", "input": "one two three. four.", "response_format": "wav"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(resp.content)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        assert wav.getnframes() == 4 * 1600
    pcm = await api.http.post("/v1/audio/speech", json={
        "model": "voice", "input": "one two three. four.", "response_format": "pcm",
        "speed": 2.0})
    assert pcm.headers["content-type"] == "audio/pcm" and len(pcm.content) == 2 * 2 * 1600


@pytest.mark.parametrize("response_format, media_type", [
    ("mp3", "audio/mpeg"), ("flac", "audio/flac"), ("opus", "audio/ogg"), ("aac", "audio/aac")])
async def test_speech_compressed_formats_decode_back(api, response_format, media_type):
    out = await api.openai.audio.speech.create(model="voice", voice="fake",
                                               input="one two three four five.",
                                               response_format=response_format)
    assert out.response.headers["content-type"] == media_type
    assert abs(_decoded_seconds(out.content) - 0.5) < 0.1


async def test_speech_streams_raw_audio(api):
    async with api.openai.audio.speech.with_streaming_response.create(
            model="slow-voice", voice="fake", input="one. two three. four five six.",
            response_format="wav", extra_body={"stream": True}) as resp:
        assert resp.headers["content-type"] == "audio/wav"
        chunks = [chunk async for chunk in resp.iter_bytes()]
    data = b"".join(chunks)
    assert data[:4] == b"RIFF" and data[40:44] == b"\xff\xff\xff\xff"
    assert len(data) == 44 + 2 * 1600 * 6
    assert b"data: " not in data


async def test_a_stream_that_breaks_is_cut_not_ended(api):
    with pytest.raises(RuntimeError, match="broke down"):
        async with api.http.stream("POST", "/v1/audio/speech", json={
                "model": "broken-voice", "input": "one. two.", "response_format": "pcm",
                "stream": True}) as resp:
            assert resp.status_code == 200
            async for _ in resp.aiter_bytes():
                pass
    whole = await api.http.post("/v1/audio/speech", json={
        "model": "broken-voice", "input": "one. two.", "response_format": "pcm"})
    assert whole.status_code == 500 and whole.json()["error"]["type"] == "server_error"


@pytest.mark.parametrize("body, param", [
    ({"response_format": "ogg"}, "response_format"),
    ({"speed": 4.5}, "speed"),
    ({"speed": 0.1}, "speed"),
    ({"input": "x" * (protocol.MAX_SPEECH_CHARS + 1)}, "input"),
    ({"input": ""}, "input"),
    ({"voice": "alloy"}, "voice"),
    ({"stream_format": "sse"}, "stream_format"),
    ({"voice": "alloy", "stream": True}, "voice"),
])
async def test_bad_speech_requests_are_400s(api, body, param):
    resp = await api.http.post("/v1/audio/speech", json={"model": "voice", "input": "hi.",
                                                         **body})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


async def test_our_client_handle(api):
    import httpx

    from xinference.client import AsyncClient, AudioModelHandle

    client = AsyncClient("http://testserver", transport=httpx.ASGITransport(app=api.app))
    try:
        handle = await client.get_model("voice")
        assert isinstance(handle, AudioModelHandle)
        assert await handle.transcriptions(SPOKEN, response_format="text") == \
            "Hello there. General Kenobi.\n"
        verbose = await handle.translations(SPOKEN, response_format="verbose_json",
                                            timestamp_granularities=["word"])
        assert verbose["task"] == "translate" and len(verbose["words"]) == 5
        events = [e async for e in await handle.transcriptions(SPOKEN, stream=True)]
        assert [e["type"] for e in events] == ["transcript.text.delta"] * 2 + [
            "transcript.text.done"]
        wav = await handle.speech("one two.", voice="fake", response_format="wav")
        assert wav[:4] == b"RIFF" and len(wav) == 44 + 2 * 3200
        stream = await handle.speech("one. two.", response_format="pcm", stream=True)
        assert b"".join([chunk async for chunk in stream]) == b"".join(
            [codec_pcm(1600), codec_pcm(1600)])
    finally:
        await client.close()


def codec_pcm(samples: int) -> bytes:
    """The fake's tone of ``samples`` samples as pcm."""
    import numpy as np

    from xinference.model.audio import codec

    t = np.arange(samples, dtype=np.float32) / 16000
    return codec.pcm16((0.1 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32))
