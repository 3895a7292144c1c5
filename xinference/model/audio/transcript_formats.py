"""A :class:`~.interface.Transcript` in each of OpenAI's ``response_format``s.

``json`` -> ``{"text"}``; ``verbose_json`` -> task, language, duration, text and the
``segments`` and/or ``words`` the request's ``timestamp_granularities`` asked for
(segments when it asked for none); ``text`` -> the text and a newline; ``srt`` and
``vtt`` -> numbered (srt) cues with ``HH:MM:SS,mmm`` / ``HH:MM:SS.mmm`` times.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Dict, List, Union

from .interface import Transcript


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, int(round(seconds * 1000)))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(transcript: Transcript) -> str:
    cues = []
    for number, seg in enumerate(transcript.segments, start=1):
        cues.append(f"{number}\n{_clock(seg.start, ',')} --> {_clock(seg.end, ',')}\n"
                    f"{seg.text.strip()}\n")
    return "\n".join(cues)


def vtt(transcript: Transcript) -> str:
    cues = [f"{_clock(seg.start, '.')} --> {_clock(seg.end, '.')}\n{seg.text.strip()}\n"
            for seg in transcript.segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def verbose(transcript: Transcript, task: str, granularities: List[str]) -> Dict[str, Any]:
    language = "english" if task == "translate" else transcript.language
    out: Dict[str, Any] = {"task": task, "language": language,
                           "duration": round(transcript.duration, 3),
                           "text": transcript.text}
    if "segment" in granularities or not granularities:
        out["segments"] = [
            {"id": i, "seek": int(seg.start * 100), "start": round(seg.start, 3),
             "end": round(seg.end, 3), "text": seg.text, "tokens": list(seg.tokens),
             "temperature": seg.temperature, "avg_logprob": seg.avg_logprob,
             "compression_ratio": seg.compression_ratio,
             "no_speech_prob": seg.no_speech_prob}
            for i, seg in enumerate(transcript.segments)]
    if "word" in granularities:
        out["words"] = [{k: (round(v, 3) if isinstance(v, float) else v)
                         for k, v in asdict(word).items()} for word in transcript.words]
    return out


def render(transcript: Transcript, response_format: str, task: str,
           granularities: List[str]) -> Union[Dict[str, Any], bytes]:
    """The answer: a dict for the JSON formats, UTF-8 bytes for the text ones."""
    if response_format == "json":
        return {"text": transcript.text}
    if response_format == "verbose_json":
        return verbose(transcript, task, granularities)
    if response_format == "srt":
        return srt(transcript).encode()
    if response_format == "vtt":
        return vtt(transcript).encode()
    return (transcript.text + "\n").encode()
