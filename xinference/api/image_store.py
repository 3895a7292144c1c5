"""The gateway's short-lived store of generated images, for ``response_format=url``.

A replica always answers with base64 PNGs; when the client asked for URLs the
gateway keeps each image's bytes here and answers with
``<base>/v1/images/files/<id>.png``. An image stays for ``XINFERENCE_IMAGE_URL_TTL``
seconds (default an hour); the store holds at most
``XINFERENCE_IMAGE_URL_STORE_MAX_BYTES`` (default 256 MB) and drops the oldest
images first when a new one needs room. A URL that expired or was dropped answers 404.
The store lives in the gateway's process, on its event loop (no lock needed); in a
cluster the URL is served by the gateway that made it.
"""

from __future__ import annotations

import collections
import secrets
import time
from typing import Callable, Deque, Dict, Optional, Tuple

from ..errors import InvalidRequestError


class ImageStore:
    """Images by id, each until its expiry, within a total size."""

    def __init__(self, ttl: float, max_bytes: int, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._clock = clock
        self._images: Dict[str, Tuple[float, bytes]] = {}
        self._order: Deque[str] = collections.deque()
        self.total_bytes = 0

    def __len__(self) -> int:
        return len(self._images)

    def _drop(self, image_id: str) -> None:
        entry = self._images.pop(image_id, None)
        if entry is not None:
            self.total_bytes -= len(entry[1])

    def _expire(self) -> None:
        now = self._clock()
        while self._order:
            oldest = self._order[0]
            entry = self._images.get(oldest)
            if entry is not None and entry[0] > now:
                return
            self._order.popleft()
            self._drop(oldest)

    def put(self, data: bytes) -> str:
        """Keep ``data`` and return its id; a 400 when one image exceeds the whole store."""
        if len(data) > self.max_bytes:
            raise InvalidRequestError(
                f"The image is {len(data)} bytes, more than the {self.max_bytes} bytes the "
                "server keeps for image URLs (XINFERENCE_IMAGE_URL_STORE_MAX_BYTES); ask for "
                "response_format=b64_json", param="response_format")
        self._expire()
        while self._order and self.total_bytes + len(data) > self.max_bytes:
            self._drop(self._order.popleft())
        image_id = secrets.token_urlsafe(16)
        self._images[image_id] = (self._clock() + self.ttl, data)
        self._order.append(image_id)
        self.total_bytes += len(data)
        return image_id

    def get(self, image_id: str) -> Optional[bytes]:
        """The image's bytes, or None once it expired (or never existed)."""
        self._expire()
        entry = self._images.get(image_id)
        return None if entry is None else entry[1]
