"""The audio API's vocabulary and limits, shared by the routes and the serving layer.

Standard library only: the gateway imports it without importing any audio package.
"""

from __future__ import annotations

# /v1/audio/speech: the formats written (codec.py) and their media types.
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
SPEECH_MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac",
                      "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}
MAX_SPEECH_CHARS = 4096            # OpenAI's bound on `input`
MIN_SPEED, MAX_SPEED = 0.25, 4.0

# /v1/audio/transcriptions and /translations: the answer formats and their media types.
TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
TRANSCRIPT_MEDIA_TYPES = {"json": "application/json", "verbose_json": "application/json",
                          "text": "text/plain; charset=utf-8",
                          "srt": "text/plain; charset=utf-8", "vtt": "text/vtt; charset=utf-8"}
STREAMED_TRANSCRIPT_FORMATS = ("json", "text")  # streamed: text events, whatever the format
GRANULARITIES = ("segment", "word")
MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # OpenAI's bound on `file`
MAX_AUDIO_SECONDS = 3 * 3600         # what a file may decode to (25 MB can hold days of flac)
MAX_PROMPT_CHARS = 4096

# verbose_json names the language in English words, as OpenAI does ("english").
_LANGUAGE_NAMES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
}


def language_name(code: str) -> str:
    """``en`` -> ``english``; a code without a name here is given as it is."""
    return _LANGUAGE_NAMES.get(code, code)
