"""Text embeddings with sentence-transformers, batched across concurrent requests.

Each request is parsed, tokenized (for the token limit and the usage count)
and checked on its own; then its texts join a :class:`DynamicBatcher`, whose one
worker thread runs ``SentenceTransformer.encode`` on merged batches, so the event
loop never waits on torch.

Engine options (``EngineConfig.options``): ``n_threads`` (torch intra-op threads,
default 1), ``batch_size`` (sentences gathered per batching window, default 4 x
``XINFERENCE_BATCH_SIZE``) / ``batch_interval`` (default ``XINFERENCE_BATCH_INTERVAL``),
``max_items`` (inputs per request, default 2048),
``padding_budget`` (a merged batch is encoded in runs of similar length, each padded
to at most this many tokens, default 256), ``trust_remote_code`` (default: the
family's flag, else false).

Threads: on the shared 2-core build machine, 2 torch threads encoded batches 1.1-1.6x
faster than 1 (single sentences about the same), but then torch holds both cores and
the event loop, the gateway and other models wait (transformers decoding ran 15x slower
with 2 under load). The default is 1; pass ``n_threads=2`` on a machine with spare cores.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional, Tuple

from ...errors import InvalidRequestError
from .. import embedding_input as inp
from .base import EmbeddingEngine, EngineConfig
from .st_common import INLINE_TOKENIZE_CHARS, BatchedSentenceModel, count_tokens



class SentenceTransformersEmbedding(BatchedSentenceModel, EmbeddingEngine):
    """OpenAI ``/v1/embeddings`` on a ``SentenceTransformer`` model, on CPU."""

    def __init__(self, config: EngineConfig):
        super().__init__(config)
        self.dimensions = 0

    def load(self) -> None:
        """Load the model on CPU and start its batcher."""
        from sentence_transformers import SentenceTransformer

        model = self._load_model(SentenceTransformer, "embed", self._encode_batch)
        self.dimensions = int(model.get_embedding_dimension() or 0)

    def describe(self) -> Dict[str, Any]:
        return {"n_threads": self.n_threads, "dimensions": self.dimensions,
                "max_tokens": self.max_tokens,
                "batch_size": self._batcher.max_batch_size if self._batcher else None}

    def _encode(self, texts: List[str]) -> List[Any]:
        vectors = self._model.encode(texts, batch_size=len(texts), convert_to_numpy=True,
                                     show_progress_bar=False)
        return list(vectors)

    def _encode_batch(self, items: List[Tuple[str, int]]) -> List[Any]:
        """Vectors for ``(text, n_tokens)`` items, encoded in runs of similar length."""
        return self._run_grouped(self._encode, [t for t, _ in items], [n for _, n in items])

    @property
    def _max_items(self) -> int:
        return int(self.config.options.get("max_items") or inp.DEFAULT_MAX_ITEMS)

    def _prepare(self, items: List[inp.RawItem], truncate: bool) -> List[Tuple[str, int]]:
        """``(text, n_tokens)`` for each input; raises on an empty or over-long input."""
        texts = [item if isinstance(item, str)
                 else self._tokenizer.decode(item, skip_special_tokens=True) for item in items]
        for i, text in enumerate(texts):
            if not text:
                raise InvalidRequestError(f"`input[{i}]` decodes to empty text", param="input")
        counts = count_tokens(self._tokenizer, self._backend, texts)
        for i, n in enumerate(counts):
            if n > self.max_tokens and not truncate:
                raise inp.too_long_error(i, n, self.max_tokens, len(counts))
        return list(zip(texts, counts))

    async def embed(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """OpenAI ``list`` of ``embedding`` objects with real token ``usage``."""
        if self._batcher is None:
            raise InvalidRequestError("the embedding model is not loaded")
        items = inp.parse_input(request.get("input"), self._max_items)
        inp.check_token_ids(items, len(self._tokenizer))
        fmt = inp.parse_encoding_format(request)
        dims = inp.parse_dimensions(request, self.dimensions,
                                    bool(inp.family_flag(self.config.family, "matryoshka")),
                                    self.config.model_name or "this model")
        truncate = inp.parse_truncate(request)
        if sum(len(i) for i in items) > INLINE_TOKENIZE_CHARS:
            prepared = await asyncio.to_thread(self._prepare, items, truncate)
        else:
            prepared = self._prepare(items, truncate)
        tokens = sum(min(n, self.max_tokens) for _, n in prepared)
        vectors = await self._batcher.submit(prepared)
        data = [{"object": "embedding", "index": i, "embedding": self._format(v, dims, fmt)}
                for i, v in enumerate(vectors)]
        return {"object": "list", "data": data, "model": self.config.model_uid,
                "usage": inp.usage(tokens)}

    @staticmethod
    def _format(vector: Any, dims: Optional[int], fmt: str) -> Any:
        if dims is not None:
            import numpy as np

            vector = vector[:dims]
            norm = float(np.linalg.norm(vector))
            if norm > 0:
                vector = vector / norm
        if fmt == "base64":
            return inp.vector_to_base64(vector)
        return vector.tolist()
