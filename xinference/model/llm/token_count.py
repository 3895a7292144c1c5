"""Prompt tokens of a chat request, counted the way a text engine builds its prompt.

The prompt is rendered from the model's chat template with the tools the model is
offered (none for ``tool_choice: "none"``, only the named one for a named
choice), the generation prompt, the tokenizer's special tokens and the template
variables (launch-time ``enable_thinking``, then ``chat_template_kwargs``), then
encoded without adding special tokens: exactly what the engines' chat path does,
so the count equals the ``prompt_tokens`` of the same request's answer.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

from ...errors import InvalidRequestError
from .chat_template import render_chat_template, template_kwargs
from .tool_calls import offered_tools


def count_chat_tokens(chat_template: Optional[str], encode: Callable[[str], Sequence[Any]],
                      request: Mapping[str, Any], enable_thinking: Optional[bool],
                      special_tokens: Optional[Mapping[str, Any]] = None) -> int:
    """How many tokens the chat prompt of ``request`` has.

    ``encode`` turns prompt text into token ids with no special tokens added (the
    template writes them); ``special_tokens`` are the template's ``bos_token`` and
    friends (:func:`~xinference.model.llm.chat_template.special_tokens`). A model
    without a chat template, or a template that rejects the messages, raises
    :class:`InvalidRequestError`.
    """
    if not chat_template:
        raise InvalidRequestError("This model has no chat template, so it has no chat prompt "
                                  "to count", param="messages")
    prompt = render_chat_template(chat_template, request.get("messages"), offered_tools(request),
                                  True, special_tokens,
                                  template_kwargs(enable_thinking, request))
    return len(encode(prompt))
