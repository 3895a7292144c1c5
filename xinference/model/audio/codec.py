"""Audio in and out: decoding an uploaded file, encoding synthesized samples.

Decoding reads any container and codec FFmpeg knows (wav, mp3, flac, ogg, m4a,
webm ...) through PyAV and gives float32 mono samples at the rate asked for.
Encoding gives the six formats of OpenAI's ``/v1/audio/speech``: ``pcm`` (raw 16-bit
little-endian mono) and ``wav`` with the standard library, ``mp3``, ``flac``,
``opus`` (in Ogg) and ``aac`` (ADTS) through PyAV's bundled encoders. A
:class:`StreamEncoder` gives the bytes of a format piece by piece, as the samples
come, so a stream of speech can be played while it is made.
"""

from __future__ import annotations

import io
import struct
import threading
from typing import Any, List, Optional

from ...errors import InvalidRequestError
from . import protocol
from .protocol import SPEECH_FORMATS

# format -> (PyAV container, PyAV encoder); pcm and wav are written by hand.
_AV_FORMATS = {"mp3": ("mp3", "libmp3lame"), "flac": ("flac", "flac"),
               "opus": ("ogg", "libopus"), "aac": ("adts", "aac")}
# What the muxer buffers before it hands bytes on (small: streamed speech flows early).
_IO_BUFFER = 4096


def decode(data: bytes, sample_rate: int = 16000) -> Any:
    """float32 mono samples of the audio file ``data`` at ``sample_rate`` (a numpy array).

    A file that is not audio is a 400 on ``file``."""
    import av
    import numpy as np

    if not data:
        raise InvalidRequestError("`file` is empty", param="file")
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    parts: List[Any] = []
    limit, total = protocol.MAX_AUDIO_SECONDS * sample_rate, 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise InvalidRequestError("`file` has no audio stream", param="file")
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
                    total += len(parts[-1])
                if total > limit:
                    raise _too_long()
            parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except (av.error.FFmpegError, ValueError) as exc:
        raise InvalidRequestError(f"`file` could not be read as audio: {exc}",
                                  param="file") from None
    samples = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    if len(samples) > limit:
        raise _too_long()
    if not len(samples):
        raise InvalidRequestError("`file` holds no audio samples", param="file")
    return samples


def _too_long() -> InvalidRequestError:
    hours = protocol.MAX_AUDIO_SECONDS / 3600
    return InvalidRequestError(f"`file` holds more than {hours:g} hours of audio; send a "
                               "shorter recording", param="file")


def pcm16(samples: Any) -> bytes:
    """float samples in [-1, 1] as 16-bit signed little-endian PCM."""
    import numpy as np

    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def wav_header(sample_rate: int, data_bytes: Optional[int]) -> bytes:
    """A 44-byte mono 16-bit WAV header; ``data_bytes`` None: unknown length (a stream)."""
    size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", size))


def check_format(response_format: str) -> str:
    if response_format not in SPEECH_FORMATS:
        raise InvalidRequestError(
            f"`response_format` {response_format!r} is not an audio format this server "
            f"writes; use one of {', '.join(SPEECH_FORMATS)}", param="response_format")
    return response_format


def encode(samples: Any, sample_rate: int, response_format: str) -> bytes:
    """The whole audio file of ``samples`` in ``response_format``."""
    check_format(response_format)
    if response_format == "wav":
        data = pcm16(samples)
        return wav_header(sample_rate, len(data)) + data
    encoder = StreamEncoder(sample_rate, response_format)
    return encoder.feed(samples) + encoder.finish()


class _Sink:
    """A write-only file for the muxer; :meth:`take` hands over what it wrote so far."""

    def __init__(self):
        self._parts: List[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class StreamEncoder:
    """Encodes samples piece by piece: :meth:`feed` returns the bytes ready so far,
    :meth:`finish` the rest. A streamed wav has an unknown length in its header.
    Thread-safe: a stream closed while a worker thread feeds it waits for that piece."""

    def __init__(self, sample_rate: int, response_format: str):
        self.sample_rate = sample_rate
        self.format = check_format(response_format)
        self._header: Optional[bytes] = wav_header(sample_rate, None) if self.format == "wav" \
            else None
        self._container = self._stream = self._resampler = None
        self._sink = _Sink()
        self._pts = 0
        self._lock = threading.Lock()
        if self.format in _AV_FORMATS:
            self._open()

    def _open(self) -> None:
        import av

        container_format, codec = _AV_FORMATS[self.format]
        self._container = av.open(self._sink, mode="w", format=container_format,
                                  buffer_size=_IO_BUFFER)
        self._stream = self._container.add_stream(codec, rate=self.sample_rate, layout="mono")
        wanted = self._stream.codec_context.codec.audio_formats[0].name
        self._resampler = av.AudioResampler(format=wanted, layout="mono", rate=self.sample_rate)

    def _mux(self, frame: Any) -> None:
        frames = self._resampler.resample(frame)
        for out in frames:
            for packet in self._stream.encode(out):
                self._container.mux(packet)

    def feed(self, samples: Any) -> bytes:
        with self._lock:
            return self._feed(samples)

    def _feed(self, samples: Any) -> bytes:
        if self.format in ("pcm", "wav"):
            header, self._header = self._header or b"", None
            return header + pcm16(samples)
        if self._container is None:  # closed: the stream was dropped
            return b""
        import av
        import numpy as np

        samples = np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1)
        if samples.shape[1]:
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = self._pts
            self._pts += samples.shape[1]
            self._mux(frame)
        return self._sink.take()

    def finish(self) -> bytes:
        with self._lock:
            return self._finish()

    def _finish(self) -> bytes:
        if self._container is None:
            header, self._header = self._header or b"", None
            return header
        self._mux(None)
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None
        return self._sink.take()

    def close(self) -> None:
        """Drop an unfinished encoding (a stream whose client left)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - nothing to keep of a dropped stream
                pass
            self._container = None
