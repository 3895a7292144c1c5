"""The audio type's family fields: Xinference's flat definition and the type's check.

Xinference registers a custom audio model as a flat object::

    {"model_name": "my-whisper", "model_family": "whisper", "multilingual": true,
     "model_uri": "/models/whisper-small", "model_ability": ["audio2text"]}

:func:`flat_to_specs` turns it into the common shape: one spec whose ``model_uri`` is the
folder, of format ``ctranslate2`` when the folder holds a CTranslate2 ``model.bin``
(faster-whisper), else the family's own (``pytorch`` for Whisper: transformers; ``onnx``
for hibari), unless ``model_format`` says. Besides the shared fields, an audio family
may say which voices it speaks (``voices``, the first being the default), whether it
hears more than English (``multilingual``), and the sha256 of its weight files
(``file_sha256``: file name -> hex digest), which the engine verifies before loading.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping

from ..family_checks import bad_field, check_abilities, check_str_list
from ..files import local_uri_path

AUDIO_ABILITIES = ("audio2text", "text2audio")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FORMATS = {"whisper": "pytorch", "hibari": "onnx"}


def flat_to_specs(data: Mapping[str, Any]) -> Dict[str, Any]:
    """A flat audio definition in the common shape (``model_specs``); others unchanged."""
    out = dict(data)
    if out.get("model_specs") is not None:
        return out
    family = out.get("model_family")
    if family not in _FORMATS:
        raise bad_field(f"`model_family` is {family!r}; audio engines run "
                        f"{', '.join(_FORMATS)}", "model_family")
    uri = out.pop("model_uri", None) or out.pop("model_path", None)
    if not isinstance(uri, str) or not local_uri_path(uri).is_absolute():
        raise bad_field("`model_uri` is required: the absolute path of the model's local "
                        "folder", "model_uri")
    model_format = out.pop("model_format", None)
    if model_format is None:
        ct2 = family == "whisper" and (local_uri_path(uri) / "model.bin").exists()
        model_format = "ctranslate2" if ct2 else _FORMATS[family]
    out["model_specs"] = [{"model_format": model_format, "model_uri": uri,
                           "quantizations": ["none"]}]
    return out


def check_audio(family: Mapping[str, Any]) -> None:
    """An audio model's abilities, voices, language flag and file digests."""
    check_abilities(family, AUDIO_ABILITIES)
    check_str_list(family, "voices")
    multilingual = family.get("multilingual")
    if multilingual is not None and not isinstance(multilingual, bool):
        raise bad_field("`multilingual` must be true or false", "multilingual")
    digests = family.get("file_sha256")
    if digests is None:
        return
    if not isinstance(digests, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and _SHA256.match(v)
            for k, v in digests.items()):
        raise bad_field("`file_sha256` must map file names to lower-case sha256 hex digests",
                        "file_sha256")


def verify_files(folder: str, family: Mapping[str, Any]) -> None:
    """Compare the files in ``folder`` with the family's ``file_sha256``; a file that
    differs (a changed repackage) fails the load with both digests."""
    import hashlib
    import os

    from ...errors import ModelLaunchError

    for name, expected in (family.get("file_sha256") or {}).items():
        path = os.path.join(folder, name)
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            raise ModelLaunchError(
                f"{path} has sha256 {digest.hexdigest()}, not the {expected} that "
                f"{family.get('model_name')} expects; reinstall the package that ships it")
