"""The image type's family fields: Xinference's flat definition and its check.

Xinference registers a custom image model as a flat object::

    {"model_name": "my-sd", "model_family": "stable_diffusion",
     "model_uri": "/models/my-sd", "model_ability": ["text2image", "image2image"]}

:func:`flat_to_specs` turns it into the common shape (one spec of format
``diffusers`` whose ``model_uri`` is the folder), so registration, persistence,
launch planning and engine matching treat it like every other type's family; a
definition that has ``model_specs`` already is left as it is. :func:`check_image`
checks the type's own fields.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

from ..family_checks import bad_field, check_abilities, check_optional_str
from ..files import local_uri_path

IMAGE_ABILITIES = ("text2image", "image2image", "inpainting")
IMAGE_FORMAT = "diffusers"


def flat_to_specs(data: Mapping[str, Any]) -> Dict[str, Any]:
    """A flat image definition in the common shape (``model_specs``); others unchanged."""
    out = dict(data)
    if out.get("model_specs") is not None:
        return out
    family = out.get("model_family")
    if not isinstance(family, str) or not family.strip():
        raise bad_field("`model_family` is required for an image model, e.g. "
                        "\"stable_diffusion\"", "model_family")
    uri = out.pop("model_uri", None) or out.pop("model_path", None)
    if not isinstance(uri, str) or not uri.strip():
        raise bad_field("`model_uri` is required: the local folder of the diffusers model "
                        "(the one holding model_index.json)", "model_uri")
    if ("://" in uri and not uri.startswith("file://")) or not local_uri_path(uri).is_absolute():
        raise bad_field(f"`model_uri` is {uri!r}: give the absolute path of a local folder",
                        "model_uri")
    out["model_specs"] = [{"model_format": IMAGE_FORMAT, "model_uri": uri,
                           "quantizations": ["none"]}]
    return out


def check_image(family: Mapping[str, Any]) -> None:
    """An image model's abilities and family name."""
    check_abilities(family, IMAGE_ABILITIES)
    check_optional_str(family, "model_family")
    if family.get("model_family") == "":
        raise bad_field("`model_family` must not be empty", "model_family")
