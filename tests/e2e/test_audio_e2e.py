"""Audio end to end: a real xinference-local serving the built-in hibari voice and Whisper
tiny.en, driven by the ``xinference`` CLI, the official ``openai`` SDK and our client.

What the voice says is heard back by Whisper, word for word. Both models are launched
once for the module (hibari with ``xinference launch -t audio``) and terminated at its end.
"""

import json
import re

import openai
import pytest

from xinference.client import AudioModelHandle, Client, XinferenceClientError

from .conftest import run_cli

TTS_UID = "e2e-hibari"
STT_UID = "e2e-whisper"
SENTENCE = "The quick brown fox jumps over the lazy dog."
SECOND = "We will meet at the library after lunch."


def words(text: str):
    return re.findall(r"[a-z']+", text.lower())


@pytest.fixture(scope="module")
def models(local_server, api):
    out = run_cli(local_server.base_url, "launch", "-t", "audio", "-n", "hibari-tts",
                  "-u", TTS_UID)
    assert out.returncode == 0, out.stderr
    resp = api.post("/v1/models", json={"model_name": "whisper-tiny.en", "model_type": "audio",
                                        "model_uid": STT_UID}, timeout=600)
    assert resp.status_code == 200, resp.text
    yield local_server.base_url
    for uid in (TTS_UID, STT_UID):
        api.delete(f"/v1/models/{uid}")


@pytest.fixture(scope="module")
def sdk(models):
    return openai.OpenAI(base_url=f"{models}/v1", api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def spoken(sdk):
    """The two sentences as hibari's wav, made once."""
    return sdk.audio.speech.create(model=TTS_UID, voice="heart", input=f"{SENTENCE} {SECOND}",
                                   response_format="wav").content


def test_what_is_said_is_heard(sdk, spoken):
    assert spoken[:4] == b"RIFF"
    out = sdk.audio.transcriptions.create(model=STT_UID, file=("speech.wav", spoken))
    assert words(out.text) == words(f"{SENTENCE} {SECOND}")


def test_mp3_speech_is_heard_too(sdk):
    resp = sdk.audio.speech.create(model=TTS_UID, voice="heart", input=SENTENCE,
                                   response_format="mp3")
    assert resp.response.headers["content-type"] == "audio/mpeg"
    out = sdk.audio.transcriptions.create(model=STT_UID, file=("speech.mp3", resp.content))
    assert words(out.text) == words(SENTENCE)


def test_subtitles_and_verbose_json(sdk, spoken):
    srt = sdk.audio.transcriptions.create(model=STT_UID, file=("s.wav", spoken),
                                          response_format="srt")
    assert re.match(r"1\n00:00:00,000 --> 00:00:\d\d,\d{3}\n\S", srt)
    vtt = sdk.audio.transcriptions.create(model=STT_UID, file=("s.wav", spoken),
                                          response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ")
    verbose = sdk.audio.transcriptions.create(
        model=STT_UID, file=("s.wav", spoken), response_format="verbose_json",
        timestamp_granularities=["word", "segment"])
    assert verbose.language == "english" and verbose.duration > 3
    assert [w for item in verbose.words for w in words(item.word)] == \
        words(f"{SENTENCE} {SECOND}")
    assert verbose.segments[0].start == 0.0 and verbose.segments[-1].end <= verbose.duration


def test_streamed_speech_arrives_in_pieces(sdk):
    with sdk.audio.speech.with_streaming_response.create(
            model=TTS_UID, voice="heart", input=f"{SENTENCE} {SECOND}", response_format="mp3",
            extra_body={"stream": True}) as resp:
        pieces = list(resp.iter_bytes(chunk_size=None))
    assert len(pieces) >= 2
    out = sdk.audio.transcriptions.create(model=STT_UID, file=("s.mp3", b"".join(pieces)))
    assert words(out.text) == words(f"{SENTENCE} {SECOND}")


def test_streamed_transcript_events(sdk, spoken):
    stream = sdk.audio.transcriptions.create(model=STT_UID, file=("s.wav", spoken),
                                             stream=True)
    events = list(stream)
    assert events[-1].type == "transcript.text.done"
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert deltas and "".join(deltas) == events[-1].text
    assert words(events[-1].text) == words(f"{SENTENCE} {SECOND}")


@pytest.mark.parametrize("kwargs, param", [
    ({"response_format": "ogg"}, "response_format"),
    ({"voice": "emma"}, "voice"),
    ({"speed": 5.0}, "speed"),
    ({"input": "word " * 1000}, "input"),
])
def test_bad_speech_requests_are_400s(sdk, kwargs, param):
    body = {"model": TTS_UID, "voice": "heart", "input": SENTENCE, **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.audio.speech.create(**body)
    assert caught.value.body["param"] == param


def test_english_only_whisper_does_not_translate(sdk, spoken):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.audio.translations.create(model=STT_UID, file=("s.wav", spoken))
    assert "does not serve translation" in caught.value.message


def test_our_client_drives_both_models(models, spoken):
    client = Client(models)
    tts, stt = client.get_model(TTS_UID), client.get_model(STT_UID)
    assert isinstance(tts, AudioModelHandle) and isinstance(stt, AudioModelHandle)
    flac = tts.speech(SENTENCE, voice="heart", response_format="flac")
    assert flac[:4] == b"fLaC"
    text = stt.transcriptions(flac, response_format="text")
    assert isinstance(text, str) and words(text) == words(SENTENCE)
    pieces = list(tts.speech(f"{SENTENCE} {SECOND}", response_format="pcm", stream=True))
    assert len(b"".join(pieces)) % 2 == 0 and len(pieces) >= 2
    with pytest.raises(XinferenceClientError) as caught:
        stt.translations(spoken)
    assert caught.value.status_code == 400


def test_custom_whisper_registers_flat_and_runs_on_transformers(local_server, api, sdk,
                                                                spoken, tmp_path):
    """Xinference's flat audio definition, registered over REST, launched, then served by
    the transformers engine (a tiny random Whisper: the text is nonsense, the shapes not)."""
    from audio_models import build_tiny_whisper

    folder = build_tiny_whisper(tmp_path / "tiny-whisper")
    flat = {"model_name": "e2e-tiny-whisper", "model_family": "whisper", "model_uri": folder,
            "model_ability": ["audio2text"], "multilingual": True}
    resp = api.post("/v1/model_registrations/audio",
                    json={"model": json.dumps(flat), "persist": False})
    assert resp.status_code == 200, resp.text
    try:
        resp = api.post("/v1/models", json={"model_name": "e2e-tiny-whisper",
                                            "model_type": "audio", "max_new_tokens": 4},
                        timeout=600)
        assert resp.status_code == 200, resp.text
        assert resp.json()["model_engine"] == "transformers"
        out = sdk.audio.translations.create(model="e2e-tiny-whisper",
                                            file=("s.wav", spoken),
                                            response_format="verbose_json")
        assert out.language == "english" and out.duration > 3 and len(out.segments) == 1
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.audio.transcriptions.create(model="e2e-tiny-whisper", file=("s.wav", spoken),
                                            response_format="verbose_json",
                                            timestamp_granularities=["word"])
        assert caught.value.body["param"] == "timestamp_granularities[]"
    finally:
        api.delete("/v1/models/e2e-tiny-whisper")
        api.delete("/v1/model_registrations/audio/e2e-tiny-whisper")


def test_the_official_xinference_client_speaks_and_transcribes(models):
    from xinference_client import RESTfulClient

    client = RESTfulClient(models)
    audio = client.get_model(TTS_UID).speech(SENTENCE, voice="heart", response_format="wav")
    assert audio[:4] == b"RIFF"
    heard = client.get_model(STT_UID).transcriptions(audio)
    assert words(heard["text"]) == words(SENTENCE)
