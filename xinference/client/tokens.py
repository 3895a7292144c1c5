"""Login tokens kept on disk per endpoint (``<XINFERENCE_HOME>/auth/tokens.json``, mode 600)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional, Union


def _read(path: Path) -> Dict[str, str]:
    try:
        tokens = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return tokens if isinstance(tokens, dict) else {}


def load_token(path: Union[str, Path], endpoint: str) -> Optional[str]:
    """The token saved for ``endpoint`` by a login, if any."""
    return _read(Path(path)).get(endpoint)


def save_token(path: Union[str, Path], endpoint: str, token: str) -> None:
    """Remember ``token`` for ``endpoint``; only the owner can read the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens = _read(path)
    tokens[endpoint] = token
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(tokens, handle)
