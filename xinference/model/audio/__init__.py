"""The audio model type: speech to text (``audio2text``) and text to speech (``text2audio``).

- :mod:`.interface`: the engine interfaces (:class:`AudioEngine`, with
  :class:`SpeechToTextEngine` and :class:`TextToSpeechEngine`) and their typed results;
- :mod:`.family`: the check of an audio family's own fields;
- :mod:`.serving`: engine results -> wire answers (JSON, text, subtitles, audio bytes);
- :mod:`.codec`: audio files in (any container PyAV reads) and out (wav, pcm, mp3, ...);
- :mod:`.transcript_formats`: a transcript as json, text, srt, vtt or verbose_json;
- engines: :mod:`.whisper_ct2` (faster-whisper), :mod:`.whisper_hf` (transformers),
  :mod:`.hibari_tts` (hibari), :mod:`.fake` (control-plane tests).
"""
