"""Python client of an Xinference server (stands alone: needs only httpx).

>>> from xinference.client import Client
>>> client = Client("http://127.0.0.1:9997")
>>> uid = client.launch_model("smollm2-135m-instruct", model_engine="llama.cpp")
>>> client.get_model(uid).chat([{"role": "user", "content": "Hi"}])
"""

from .clients import AsyncClient, AsyncRESTfulClient, Client, RESTfulClient
from .errors import XinferenceClientError, XinferenceConnectionError
from .handles import (
    AudioModelHandle,
    ChatModelHandle,
    EmbeddingModelHandle,
    GenerateModelHandle,
    ImageModelHandle,
    ModelHandle,
    RerankModelHandle,
)

__all__ = [
    "AsyncClient", "AsyncRESTfulClient", "Client", "RESTfulClient",
    "XinferenceClientError", "XinferenceConnectionError",
    "ModelHandle", "GenerateModelHandle", "ChatModelHandle", "EmbeddingModelHandle",
    "RerankModelHandle", "ImageModelHandle", "AudioModelHandle",
]
