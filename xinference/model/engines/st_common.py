"""What the sentence-transformers engines share: loading on CPU, token counting, batching.

:class:`BatchedSentenceModel` loads a ``SentenceTransformer`` or ``CrossEncoder``
with the engine options (``n_threads``, ``trust_remote_code``), settles the token
limit, keeps a private tokenizer for counting tokens off the engine thread and
starts the :class:`~xinference.model.batching.DynamicBatcher` that feeds it.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ...errors import InvalidRequestError, ModelLaunchError
from .. import embedding_input as inp
from ..batching import DynamicBatcher, encoder_batcher, run_grouped
from .base import EngineConfig

DEFAULT_PADDING_BUDGET = 256
# Requests with more text than this are tokenized in a thread, not on the event loop.
INLINE_TOKENIZE_CHARS = 16_000
FALLBACK_MAX_TOKENS = 512


def set_torch_threads(options: Dict[str, Any]) -> int:
    """Apply ``options["n_threads"]`` (default 1) to torch; returns the count used."""
    import torch

    n_threads = int(options.get("n_threads") or 1)
    if n_threads < 1:
        raise InvalidRequestError("n_threads must be at least 1", param="n_threads")
    torch.set_num_threads(n_threads)
    return n_threads


def trust_remote_code(config: EngineConfig) -> bool:
    """The ``trust_remote_code`` option, else the family's flag, else false."""
    value = config.options.get("trust_remote_code")
    if value is None:
        value = inp.family_flag(config.family, "trust_remote_code")
    return bool(value)


def request_tokenizer(tokenizer: Any) -> Tuple[Any, Any]:
    """A private copy of ``tokenizer`` for counting tokens outside the engine thread.

    Returns ``(tokenizer_copy, backend)`` where ``backend`` is the Rust tokenizer with
    truncation and padding off (read-only use of it is thread-safe), or None for a
    slow tokenizer.
    """
    own = copy.deepcopy(tokenizer)
    backend = getattr(own, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    return own, backend


def count_tokens(tokenizer: Any, backend: Any, texts: Sequence[Any]) -> List[int]:
    """Token counts of texts (or of ``(a, b)`` pairs), special tokens included."""
    if backend is not None:
        return [len(e.ids) for e in backend.encode_batch(list(texts), add_special_tokens=True)]
    return [len(tokenizer(*t if isinstance(t, tuple) else (t,))["input_ids"]) for t in texts]


class BatchedSentenceModel:
    """Mixin of the sentence-transformers engines; the engine class supplies ``config``."""

    config: EngineConfig
    _model: Any = None
    _tokenizer: Any = None
    _backend: Any = None
    _batcher: Optional[DynamicBatcher] = None
    max_tokens: int = 0
    n_threads: int = 1

    def _load_model(self, factory: Callable[..., Any], kind: str,
                    batch_fn: Callable[[List[Any]], Sequence[Any]]) -> Any:
        """Load ``factory(path)`` on CPU, settle ``max_tokens`` and start the batcher."""
        cfg = self.config
        self.n_threads = set_torch_threads(cfg.options)
        try:
            model = factory(cfg.model_path, device="cpu", trust_remote_code=trust_remote_code(cfg))
        except Exception as exc:
            raise ModelLaunchError(f"sentence-transformers could not load {cfg.model_path!r} "
                                   f"as a {factory.__name__}: {exc}") from exc
        model.eval()
        limits = [v for v in (model.max_seq_length, inp.family_flag(cfg.family, "max_tokens"))
                  if isinstance(v, int) and v > 0]
        self.max_tokens = min(limits) if limits else FALLBACK_MAX_TOKENS
        model.max_seq_length = self.max_tokens
        self._tokenizer, self._backend = request_tokenizer(model.tokenizer)
        self._model = model
        self._batcher = encoder_batcher(batch_fn, cfg.options, f"{kind}-{cfg.model_uid}")
        return model

    def _run_grouped(self, fn: Callable[[List[Any]], Sequence[Any]], items: Sequence[Any],
                     lengths: Sequence[int]) -> List[Any]:
        """``fn`` over items in runs of similar length, each padded to the padding budget."""
        budget = int(self.config.options.get("padding_budget") or DEFAULT_PADDING_BUDGET)
        return run_grouped(fn, items, [min(n, self.max_tokens) for n in lengths], budget)

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
        self._model = None
