"""The audio type's pure parts: family shapes and checks, launch planning, transcript
formats, the codec's formats (PyAV encodes, PyAV decodes back)."""

import io
import struct
import wave

import numpy as np
import pytest

from xinference.core.launch_plan import launch_request_from_body, plan_launch
from xinference.errors import InvalidRequestError
from xinference.model.audio import codec
from xinference.model.audio.interface import Segment, Transcript, Word
from xinference.model.audio.transcript_formats import render
from xinference.model.custom import parse_custom_family
from xinference.model.registry import ModelRegistry


def test_flat_whisper_definition_gets_a_spec_of_the_folders_format(tmp_path):
    hf = parse_custom_family("audio", {"model_name": "my-whisper", "model_family": "whisper",
                                       "model_uri": str(tmp_path),
                                       "model_ability": ["audio2text"], "multilingual": True})
    assert hf["model_specs"] == [{"model_format": "pytorch", "model_uri": str(tmp_path),
                                  "quantizations": ["none"]}]
    (tmp_path / "model.bin").write_bytes(b"ct2")
    ct2 = parse_custom_family("audio", {"model_name": "my-ct2", "model_family": "whisper",
                                        "model_uri": str(tmp_path)})
    assert ct2["model_specs"][0]["model_format"] == "ctranslate2"


@pytest.mark.parametrize("fields, param", [
    ({"model_family": "bark"}, "model_family"),
    ({"model_uri": "relative/folder"}, "model_uri"),
    ({"model_ability": ["text2image"]}, "model_ability"),
    ({"multilingual": "yes"}, "multilingual"),
    ({"file_sha256": {"model.bin": "abc"}}, "file_sha256"),
    ({"voices": "heart"}, "voices"),
])
def test_bad_audio_definitions_name_the_field(fields, param):
    body = {"model_name": "x", "model_family": "whisper", "model_uri": "/models/x", **fields}
    with pytest.raises(InvalidRequestError) as caught:
        parse_custom_family("audio", body)
    assert caught.value.param == param


@pytest.mark.parametrize("name, engine", [("whisper-tiny.en", "faster_whisper"),
                                          ("hibari-tts", "hibari")])
def test_built_in_audio_models_plan_to_their_engine(name, engine):
    _, config = plan_launch(launch_request_from_body({"model_name": name,
                                                      "model_type": "audio"}),
                            ModelRegistry())
    assert config.engine == engine and config.model_type == "audio"


def _transcript() -> Transcript:
    return Transcript("Hi there. Bye.", "english", 3725.5, [
        Segment(0.0, 1.25, " Hi there.", words=[Word(" Hi", 0.0, 0.5), Word(" there.", 0.5,
                                                                             1.25)]),
        Segment(3723.0, 3725.5, " Bye.")])


def test_subtitle_clocks_cross_the_hour():
    srt = render(_transcript(), "srt", "transcribe", []).decode()
    assert "2\n01:02:03,000 --> 01:02:05,500\nBye.\n" in srt
    vtt = render(_transcript(), "vtt", "transcribe", []).decode()
    assert vtt.endswith("01:02:03.000 --> 01:02:05.500\nBye.\n")
    verbose = render(_transcript(), "verbose_json", "translate", ["word"])
    assert verbose["task"] == "translate" and "segments" not in verbose
    assert [w["word"] for w in verbose["words"]] == [" Hi", " there."]
    assert render(_transcript(), "text", "transcribe", []) == b"Hi there. Bye.\n"


def _tone(rate: int = 24000, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds), dtype=np.float32) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_wav_and_pcm_are_exact():
    samples = _tone()
    data = codec.encode(samples, 24000, "wav")
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getframerate() == 24000 and wav.getnframes() == 24000
    assert codec.encode(samples, 24000, "pcm") == codec.pcm16(samples)
    assert struct.unpack("<h", codec.pcm16(np.array([2.0], np.float32)))[0] == 32767


@pytest.mark.parametrize("fmt", ["mp3", "flac", "opus", "aac", "wav"])
def test_each_format_decodes_back_to_the_same_length(fmt):
    whole = codec.encode(_tone(), 24000, fmt)
    back = codec.decode(whole, 16000)
    assert abs(len(back) - 16000) < 1600
    encoder = codec.StreamEncoder(24000, fmt)
    pieces = [encoder.feed(_tone(seconds=0.5)), encoder.feed(_tone(seconds=0.5)),
              encoder.finish()]
    assert abs(len(codec.decode(b"".join(pieces), 16000)) - 16000) < 1600


def test_unknown_formats_and_non_audio_are_400s():
    with pytest.raises(InvalidRequestError) as caught:
        codec.encode(_tone(), 24000, "ogg")
    assert caught.value.param == "response_format"
    with pytest.raises(InvalidRequestError) as caught:
        codec.decode(b"definitely not audio")
    assert caught.value.param == "file"
    with pytest.raises(InvalidRequestError, match="no audio samples"):
        codec.decode(codec.encode(np.zeros(0, np.float32), 16000, "wav"))


def test_audio_longer_than_the_bound_is_a_400(monkeypatch):
    from xinference.model.audio import protocol

    data = codec.encode(_tone(16000, 3.0), 16000, "flac")
    monkeypatch.setattr(protocol, "MAX_AUDIO_SECONDS", 2)
    with pytest.raises(InvalidRequestError, match="hours of audio") as caught:
        codec.decode(data)
    assert caught.value.param == "file"
