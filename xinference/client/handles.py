"""Model handles returned by ``client.get_model(uid)``, one class per kind of model.

A handle is bound to its client's runner: with :class:`~xinference.client.Client`
its methods return results; with :class:`~xinference.client.AsyncClient` they
return awaitables of the same results (streams become async iterators).

Which class drives a model is the ``client_handle`` of its type in
:mod:`xinference.model_types` (standard library only, so the client still imports
nothing of the server); the class may refine the choice with :meth:`ModelHandle.for_description`.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Union

from ..model_types import find_model_type
from .calls import Call, drop_none
from .errors import XinferenceClientError


async def _nothing() -> None:
    return None


class ModelHandle:
    """Base handle: the model's uid, its description and the runner that sends calls."""

    def __init__(self, model_uid: str, runner: Any, description: Optional[Dict] = None):
        self.model_uid = model_uid
        self.description = description or {}
        self._runner = runner

    @classmethod
    def for_description(cls, description: Dict[str, Any]) -> type:
        """The handle class for a model of this type with this description."""
        return cls

    def _run(self, call: Call) -> Any:
        return self._runner.run(call)

    def _post(self, path: str, verb: str, body: Dict[str, Any], stream: bool = False,
              raw: bool = False) -> Any:
        action = f"{verb} with model {self.model_uid!r}"
        return self._run(Call("POST", path, action, json=body, stream=stream, raw=raw))

    def close(self) -> Any:
        """Nothing to release: a handle shares its client's connections."""
        return _nothing() if self._runner.is_async else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_uid={self.model_uid!r})"


class GenerateModelHandle(ModelHandle):
    """An LLM that completes prompts (``/v1/completions``)."""

    def generate(self, prompt: Union[str, List[str]],
                 generate_config: Optional[Dict[str, Any]] = None) -> Any:
        """Complete ``prompt``; ``generate_config`` holds sampling options such as
        ``max_tokens``. With ``{"stream": True}`` the result is an iterator of
        completion chunks, else one completion dict."""
        config = dict(generate_config or {})
        body = {"model": self.model_uid, "prompt": prompt, **config}
        return self._post("/v1/completions", "generate", body, stream=bool(config.get("stream")))


class ChatModelHandle(GenerateModelHandle):
    """A chat LLM (``/v1/chat/completions``); it can also :meth:`generate`."""

    @classmethod
    def for_description(cls, description: Dict[str, Any]) -> type:
        """An LLM without the ``chat`` ability only generates."""
        abilities = description.get("model_ability") or []
        return cls if "chat" in abilities else GenerateModelHandle

    def chat(self, messages: Union[str, List[Dict[str, Any]]],
             tools: Optional[List[Dict[str, Any]]] = None,
             generate_config: Optional[Dict[str, Any]] = None, *,
             enable_thinking: Optional[bool] = None) -> Any:
        """Answer the conversation ``messages`` (a string is one user message).

        ``generate_config`` holds sampling options; with ``{"stream": True}`` the
        result is an iterator of chat chunks, else one chat completion dict.
        ``enable_thinking`` toggles reasoning for hybrid-thinking models.
        """
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        config = dict(generate_config or {})
        if enable_thinking is not None:
            template_kwargs = dict(config.get("chat_template_kwargs") or {})
            template_kwargs["enable_thinking"] = enable_thinking
            config["chat_template_kwargs"] = template_kwargs
        body: Dict[str, Any] = {"model": self.model_uid, "messages": messages}
        if tools is not None:
            body["tools"] = tools
        body.update(config)
        return self._post("/v1/chat/completions", "chat", body,
                          stream=bool(config.get("stream")))


class EmbeddingModelHandle(ModelHandle):
    """An embedding model (``/v1/embeddings``)."""

    def create_embedding(self, input: Union[str, List[str], List[int], List[List[int]]],
                         **kwargs: Any) -> Any:
        """Embed ``input``; extra keyword arguments (e.g. ``dimensions``) go in the body."""
        body = {"model": self.model_uid, "input": input, **kwargs}
        return self._post("/v1/embeddings", "create embeddings", body)


class RerankModelHandle(ModelHandle):
    """A reranker (``/v1/rerank``)."""

    def rerank(self, documents: List[str], query: str, top_n: Optional[int] = None,
               max_chunks_per_doc: Optional[int] = None,
               return_documents: Optional[bool] = None,
               return_len: Optional[bool] = None, **kwargs: Any) -> Any:
        """Score ``documents`` against ``query``; the answer's ``results`` are sorted
        by ``relevance_score``, best first, and cut to ``top_n`` when given."""
        body = drop_none({"model": self.model_uid, "documents": documents, "query": query,
                          "top_n": top_n, "max_chunks_per_doc": max_chunks_per_doc,
                          "return_documents": return_documents, "return_len": return_len})
        body.update(kwargs)
        return self._post("/v1/rerank", "rerank", body)


class ImageModelHandle(ModelHandle):
    """An image model: ``/v1/images/generations``, ``/variations``, ``/edits``, ``/inpainting``.

    Answers are OpenAI's ``{"created", "data": [{"url"} | {"b64_json"}]}``; ``size`` is
    ``"W*H"`` or ``"WxH"``; keyword arguments (``seed``, ``num_inference_steps``,
    ``guidance_scale``, ``negative_prompt``, ``strength``) go with the request.
    """

    def text_to_image(self, prompt: str, n: int = 1, size: Optional[str] = None,
                      response_format: str = "url", **kwargs: Any) -> Any:
        """Draw ``n`` images of ``size`` (default: the model's own) from ``prompt``."""
        body = drop_none({"model": self.model_uid, "prompt": prompt, "n": n, "size": size,
                          "response_format": response_format, **kwargs})
        return self._post("/v1/images/generations", "create images", body)

    def _upload(self, path: str, verb: str, files: Dict[str, Any], fields: Dict[str, Any]
                ) -> Any:
        form = {k: v if isinstance(v, str) else json.dumps(v)
                for k, v in drop_none({"model": self.model_uid, **fields}).items()}
        action = f"{verb} with model {self.model_uid!r}"
        parts = {name: (name, data, "application/octet-stream") for name, data in files.items()}
        return self._run(Call("POST", path, action, data=form, files=parts))

    def image_to_image(self, image: bytes, prompt: str = "",
                       negative_prompt: Optional[str] = None, n: int = 1,
                       size: Optional[str] = None, response_format: str = "url",
                       **kwargs: Any) -> Any:
        """``n`` images made from ``image`` (an image file's bytes), guided by ``prompt``;
        ``size`` defaults to the image's own (rounded down to multiples of 8)."""
        return self._upload("/v1/images/variations", "vary images", {"image": image},
                            {"prompt": prompt, "negative_prompt": negative_prompt, "n": n,
                             "size": size, "response_format": response_format, **kwargs})

    def image_edit(self, image: bytes, prompt: str, mask: Optional[bytes] = None, n: int = 1,
                   size: Optional[str] = None, response_format: str = "url",
                   **kwargs: Any) -> Any:
        """OpenAI's edit: ``image`` remade from ``prompt``; with ``mask``, only its white
        (or transparent) part is redrawn, which needs an inpainting model."""
        files = {"image": image} if mask is None else {"image": image, "mask": mask}
        return self._upload("/v1/images/edits", "edit images", files,
                            {"prompt": prompt, "n": n, "size": size,
                             "response_format": response_format, **kwargs})

    def inpainting(self, image: bytes, mask_image: bytes, prompt: str,
                   negative_prompt: Optional[str] = None, n: int = 1,
                   size: Optional[str] = None, response_format: str = "url",
                   **kwargs: Any) -> Any:
        """Redraw the white part of ``mask_image`` in ``image`` from ``prompt`` (models
        with an inpainting UNet only)."""
        return self._upload("/v1/images/inpainting", "inpaint",
                            {"image": image, "mask_image": mask_image},
                            {"prompt": prompt, "negative_prompt": negative_prompt, "n": n,
                             "size": size, "response_format": response_format, **kwargs})


class AudioModelHandle(ModelHandle):
    """An audio model: ``/v1/audio/transcriptions``, ``/translations`` and ``/speech``.

    Transcripts in ``json`` / ``verbose_json`` are dicts; ``text``, ``srt`` and ``vtt``
    are strings; with ``stream=True`` an iterator of ``transcript.text.delta`` events and
    a closing ``transcript.text.done``. Speech is the audio file's bytes, or with
    ``stream=True`` an iterator of its bytes as they are made.
    """

    def _transcript(self, path: str, verb: str, audio: bytes, language: Optional[str],
                    prompt: Optional[str], response_format: str, temperature: float,
                    timestamp_granularities: Optional[List[str]], kwargs: Dict[str, Any]
                    ) -> Any:
        stream = bool(kwargs.pop("stream", False))
        form: Dict[str, Any] = drop_none({
            "model": self.model_uid, "language": language, "prompt": prompt,
            "response_format": response_format, "temperature": str(temperature),
            **{k: str(v) for k, v in kwargs.items()}})
        if timestamp_granularities:
            form["timestamp_granularities[]"] = list(timestamp_granularities)
        if stream:
            form["stream"] = "true"
        text = response_format in ("text", "srt", "vtt") and not stream
        call = Call("POST", path, f"{verb} with model {self.model_uid!r}", data=form,
                    files={"file": ("audio", audio, "application/octet-stream")}, raw=text,
                    stream=stream, parse=(lambda data: data.decode("utf-8")) if text else None)
        return self._run(call)

    def transcriptions(self, audio: bytes, language: Optional[str] = None,
                       prompt: Optional[str] = None, response_format: str = "json",
                       temperature: float = 0,
                       timestamp_granularities: Optional[List[str]] = None,
                       **kwargs: Any) -> Any:
        """Transcribe ``audio`` (the bytes of an audio file) in its own language."""
        return self._transcript("/v1/audio/transcriptions", "transcribe", audio, language,
                                prompt, response_format, temperature,
                                timestamp_granularities, kwargs)

    def translations(self, audio: bytes, language: Optional[str] = None,
                     prompt: Optional[str] = None, response_format: str = "json",
                     temperature: float = 0,
                     timestamp_granularities: Optional[List[str]] = None,
                     **kwargs: Any) -> Any:
        """Transcribe ``audio`` into English (multilingual models)."""
        return self._transcript("/v1/audio/translations", "translate", audio, language,
                                prompt, response_format, temperature,
                                timestamp_granularities, kwargs)

    def speech(self, input: str, voice: str = "", response_format: str = "mp3",
               speed: float = 1.0, stream: bool = False, **kwargs: Any) -> Any:
        """Speak ``input``; the result is the audio file's bytes (``stream``: an iterator
        of its bytes as they come)."""
        body = {"model": self.model_uid, "input": input, "voice": voice,
                "response_format": response_format, "speed": speed, **kwargs}
        if stream:
            body["stream"] = True
        return self._post("/v1/audio/speech", "synthesize speech", body, stream=stream,
                          raw=True)


def handle_for(runner: Any, model_uid: str, description: Dict[str, Any]) -> ModelHandle:
    """The handle that fits a model's description: its type's ``client_handle``,
    refined by the description (e.g. its abilities)."""
    model_type = find_model_type(description.get("model_type"))
    if model_type is None:
        raise XinferenceClientError(
            f"model {model_uid!r} has type {description.get('model_type')!r}, "
            "which this client cannot drive")
    cls = model_type.load("client_handle").for_description(description)
    return cls(model_uid, runner, description)
