"""Prompt tokens of a chat request on llama.cpp, without running the model.

xllamacpp's ``Server`` has no tokenizer call of its own, but the llama.cpp server it
runs also listens on loopback (see :mod:`.llama_cpp_params`: random port, a key only
the engine knows). Its ``/apply-template`` endpoint renders a chat request exactly
as ``handle_chat_completions`` would (same template, tools and template kwargs), and
``/tokenize`` encodes the prompt as the chat path does (special tokens added and
parsed). Measured on SmolLM2-135M with a 319-token prompt: about 10 ms for both
calls, against a whole prompt evaluation plus one generated token for a chat call
with ``max_tokens`` 1 (0 still generates one), which is the fallback when the
server does not listen.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Dict, Optional

from ...errors import InvalidRequestError, XinferenceError

TIMEOUT = 30.0


def _post(address: str, route: str, body: Dict[str, Any], api_key: Optional[str]) -> Any:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    base = address if "://" in address else f"http://{address}"
    request = urllib.request.Request(base.rstrip("/") + route, json.dumps(body).encode(),
                                     headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        message = _error_message(exc.read()) or str(exc)
        if 400 <= exc.code <= 500:  # 500: a request it could not render, as in chat calls
            raise InvalidRequestError(f"llama.cpp: {message}", param="messages") from None
        raise XinferenceError(f"llama.cpp: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise XinferenceError(f"llama.cpp's token counter is not reachable: {exc}") from None


def _error_message(raw: bytes) -> str:
    try:
        error = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        return raw.decode(errors="replace").strip()
    return str(error.get("message") if isinstance(error, dict) else error or "")


def _by_generation(server: Any, request: Dict[str, Any]) -> int:
    answer = server.handle_chat_completions(dict(request, max_tokens=1, stream=False))
    error = answer.get("error") if isinstance(answer, dict) else answer
    if error is not None:
        message = error.get("message") if isinstance(error, dict) else error
        raise InvalidRequestError(f"llama.cpp: {message}", param="messages")
    return int(answer["usage"]["prompt_tokens"])


def count_chat_tokens(server: Any, request: Dict[str, Any], api_key: Optional[str],
                      by_generation: bool = False) -> int:
    """Tokens of the chat prompt llama.cpp builds for ``request`` (an OpenAI chat body,
    as the engine passes it to ``handle_chat_completions``). Blocking; ``api_key`` is
    the key the server was started with (``CommonParams.api_keys[0]``). With
    ``by_generation`` (a chat with images: ``/tokenize`` sees only their markers) the count
    is the ``prompt_tokens`` of a one-token generation."""
    address = getattr(server, "listening_address", None)
    if not address or by_generation:
        return _by_generation(server, request)
    prompt = _post(address, "/apply-template", request, api_key).get("prompt")
    if not isinstance(prompt, str):
        raise XinferenceError("llama.cpp's /apply-template returned no prompt")
    tokens = _post(address, "/tokenize", {"content": prompt, "add_special": True,
                                          "parse_special": True}, api_key).get("tokens")
    return len(tokens or [])
