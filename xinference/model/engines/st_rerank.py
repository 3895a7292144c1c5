"""Document reranking with a sentence-transformers ``CrossEncoder``, batched across requests.

Each ``(query, document)`` pair is one batch item: concurrent rerank requests are
merged by a :class:`DynamicBatcher` and scored by ``CrossEncoder.predict`` in one
worker thread, in runs of similar length.

Request (Xinference's ``/v1/rerank``): ``query``, ``documents`` (strings, or objects
with ``text``), ``top_n``, ``return_documents``, ``return_len``, ``max_chunks_per_doc``.
Pairs longer than the model's limit are truncated, as rerankers usually do, unless
``max_chunks_per_doc`` is given: then a long document is cut into up to that many
chunks that each fit beside the query, and it scores as its best chunk.
``meta.tokens.input_tokens`` counts the tokens the model read (special tokens
included); ``output_tokens`` is 0, a reranker writes none.

Engine options: ``n_threads``, ``batch_size``, ``batch_interval``, ``max_items``,
``padding_budget``, ``trust_remote_code`` as for the embedding engine.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Dict, List, Tuple

from ...errors import InvalidRequestError
from .. import embedding_input as inp
from .base import RerankEngine
from .st_common import INLINE_TOKENIZE_CHARS, BatchedSentenceModel

API_VERSION = {"version": "2", "is_deprecated": False}

# (query, document text, tokens of the pair)
_Pair = Tuple[str, str, int]


class SentenceTransformersRerank(BatchedSentenceModel, RerankEngine):
    """Xinference ``/v1/rerank`` on a ``CrossEncoder`` model, on CPU."""

    def load(self) -> None:
        """Load the cross-encoder on CPU and start its batcher."""
        from sentence_transformers import CrossEncoder

        self._load_model(CrossEncoder, "rerank", self._score_batch)

    def describe(self) -> Dict[str, Any]:
        return {"n_threads": self.n_threads, "max_tokens": self.max_tokens,
                "batch_size": self._batcher.max_batch_size if self._batcher else None}

    def _predict(self, pairs: List[Tuple[str, str]]) -> List[float]:
        scores = self._model.predict(pairs, batch_size=len(pairs), convert_to_numpy=True,
                                     show_progress_bar=False)
        return [float(s) for s in scores]

    def _score_batch(self, items: List[_Pair]) -> List[float]:
        return self._run_grouped(self._predict, [(q, d) for q, d, _ in items],
                                 [n for _, _, n in items])

    def _pair_tokens(self, query: str, docs: List[str]) -> List[int]:
        if self._backend is not None:
            encodings = self._backend.encode_batch([(query, d) for d in docs],
                                                   add_special_tokens=True)
            return [len(e.ids) for e in encodings]
        return [len(self._tokenizer(query, d)["input_ids"]) for d in docs]

    def _chunks(self, query: str, doc: str, max_chunks: int) -> List[str]:
        """``doc`` cut at token boundaries into at most ``max_chunks`` pieces that fit beside
        ``query``."""
        query_tokens = len(self._tokenizer(query, add_special_tokens=False)["input_ids"])
        room = self.max_tokens - query_tokens - self._tokenizer.num_special_tokens_to_add(pair=True)
        if room < 1:
            raise InvalidRequestError(
                f"`query` has {query_tokens} tokens and leaves no room for documents within this "
                f"model's limit of {self.max_tokens} tokens; shorten the query", param="query")
        offsets = self._tokenizer(doc, add_special_tokens=False,
                                  return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) <= room:
            return [doc]
        pieces = []
        for start in range(0, len(offsets), room)[:max_chunks]:
            window = offsets[start:start + room]
            pieces.append(doc[window[0][0]:window[-1][1]])
        return pieces

    def _prepare(self, params: inp.RerankParams) -> Tuple[List[_Pair], List[int]]:
        """The pairs to score and, for each pair, the index of its document."""
        owners: List[int] = []
        texts: List[str] = []
        for index, doc in enumerate(params.documents):
            pieces = (self._chunks(params.query, doc, params.max_chunks_per_doc)
                      if params.max_chunks_per_doc else [doc])
            texts.extend(pieces)
            owners.extend([index] * len(pieces))
        counts = self._pair_tokens(params.query, texts)
        return [(params.query, t, n) for t, n in zip(texts, counts)], owners

    async def rerank(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """Documents sorted by relevance to the query, best first, ``top_n`` of them."""
        if self._batcher is None:
            raise InvalidRequestError("the rerank model is not loaded")
        max_items = int(self.config.options.get("max_items") or inp.DEFAULT_MAX_ITEMS)
        params = inp.parse_rerank(request, max_items)
        size = len(params.query) * len(params.documents) + sum(len(d) for d in params.documents)
        if size > INLINE_TOKENIZE_CHARS:
            pairs, owners = await asyncio.to_thread(self._prepare, params)
        else:
            pairs, owners = self._prepare(params)
        scores = await self._batcher.submit(pairs)
        best: Dict[int, float] = {}
        for owner, score in zip(owners, scores):
            best[owner] = max(score, best.get(owner, score))
        order = sorted(best, key=lambda i: (-best[i], i))[:params.top_n]
        results = [{"index": i, "relevance_score": best[i],
                    "document": {"text": params.documents[i]} if params.return_documents else None}
                   for i in order]
        tokens = None
        if params.return_len:
            used = sum(min(n, self.max_tokens) for _, _, n in pairs)
            tokens = {"input_tokens": used, "output_tokens": 0}
        return {"id": str(uuid.uuid4()), "results": results,
                "meta": {"api_version": API_VERSION, "billed_units": None,
                         "tokens": tokens, "warnings": None}}
