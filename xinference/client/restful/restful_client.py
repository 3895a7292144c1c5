"""Xinference's historical import path; the names live in :mod:`xinference.client`."""

from ..clients import AsyncClient, Client, RESTfulClient  # noqa: F401
from ..handles import AudioModelHandle as RESTfulAudioModelHandle  # noqa: F401
from ..handles import ChatModelHandle as RESTfulChatModelHandle  # noqa: F401
from ..handles import EmbeddingModelHandle as RESTfulEmbeddingModelHandle  # noqa: F401
from ..handles import GenerateModelHandle as RESTfulGenerateModelHandle  # noqa: F401
from ..handles import ImageModelHandle as RESTfulImageModelHandle  # noqa: F401
from ..handles import ModelHandle as RESTfulModelHandle  # noqa: F401
from ..handles import RerankModelHandle as RESTfulRerankModelHandle  # noqa: F401
