"""Import paths Xinference users may already type (``xinference.client.restful...``)."""

from .restful_client import Client, RESTfulClient  # noqa: F401
