"""The one spelling of a replica's uid: ``"<model_uid>-<index>"``.

A replica's uid names its ModelActor on the worker and is what users see in
``GET /v1/models/{uid}/replicas`` and in logs. Build it with
:func:`replica_uid` and take it apart with :func:`split_replica_uid`; nothing
else should format or parse it. Model uids may themselves contain ``-``
(``qwen-2``), so the index is what follows the last ``-``; that is unambiguous
because the index is always a non-negative integer.
"""

from __future__ import annotations

from typing import Tuple

SEPARATOR = "-"


def replica_uid(model_uid: str, index: int) -> str:
    """The uid of replica ``index`` (0, 1, ...) of model ``model_uid``."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"a replica index is a non-negative integer, not {index!r}")
    if not model_uid:
        raise ValueError("a replica uid needs a non-empty model uid")
    return f"{model_uid}{SEPARATOR}{index}"


def split_replica_uid(uid: str) -> Tuple[str, int]:
    """``(model_uid, index)`` of a uid made by :func:`replica_uid`; ValueError otherwise."""
    model_uid, sep, index = uid.rpartition(SEPARATOR)
    if not sep or not model_uid or not index.isdigit() or not index.isascii():
        raise ValueError(f"{uid!r} is not a replica uid ('<model_uid>{SEPARATOR}<index>')")
    return model_uid, int(index)
