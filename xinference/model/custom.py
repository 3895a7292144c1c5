"""Custom model registrations: validate a family JSON, register it, persist it, remove it.

A custom family is the same JSON as a built-in one (see ``families/``), sent by
``xinference register -t TYPE -f FILE [--persist]`` or
``POST /v1/model_registrations/{type}``. Its specs may point at local files:
``"model_uri"`` (or ``"model_path"``) is an absolute path or a ``file://`` URI of
the model's file or folder; with ``model_file_name_template`` it names the folder
that holds the file. A spec must say where its files come from: ``model_uri``,
``model_id`` (a hub repository) or ``offline_package``.

Persisted registrations are kept as ``<registrations_dir>/<type>/<name>.json``
(``Settings.registrations_dir``, i.e. ``<XINFERENCE_HOME>/model/registrations``)
and read back by :class:`~xinference.model.registry.ModelRegistry` when it first
loads its catalogue.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from ..errors import DuplicateModelError, InvalidRequestError, ModelNotFoundError
from ..model_types import MODEL_TYPES, find_model_type, load_target
from .family_checks import bad_field as _bad
from .family_checks import check_optional_str, check_str_list
from .files import local_uri_path
from .registry import ModelFamily, ModelRegistry, get_registry, normalize_model_type

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_STR_LISTS = ("model_lang", "model_ability")
_OPTIONAL_STRS = ("model_description", "model_family")
_SPEC_STRS = ("model_id", "model_revision", "model_file_name_template", "offline_package",
              "model_hub", "model_uri", "model_path")


def _check_uri(uri: str, where: str) -> None:
    if "://" in uri and not uri.startswith("file://"):
        raise _bad(f"`{where}` is {uri!r}: only local paths (absolute, or file://) are "
                   "supported; use model_id for a hub repository", where)
    if not local_uri_path(uri).is_absolute():
        raise _bad(f"`{where}` is {uri!r}: give an absolute path, the server's working "
                   "directory is not yours", where)


def _check_spec(spec: Any, index: int) -> None:
    where = f"model_specs[{index}]"
    if not isinstance(spec, Mapping):
        raise _bad(f"`{where}` must be an object", where)
    fmt = spec.get("model_format")
    if not isinstance(fmt, str) or not fmt.strip():
        raise _bad(f"`{where}.model_format` is required: a format such as ggufv2 or pytorch",
                   f"{where}.model_format")
    quants = spec.get("quantizations", [spec["quantization"]] if "quantization" in spec else None)
    if quants is not None and (not isinstance(quants, list) or not quants
                               or not all(isinstance(q, str) and q for q in quants)):
        raise _bad(f"`{where}.quantizations` must be a non-empty list of strings "
                   "(e.g. [\"Q4_K_M\"] or [\"none\"])", f"{where}.quantizations")
    size = spec.get("model_size_in_billions")
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, float, str))):
        raise _bad(f"`{where}.model_size_in_billions` must be a number or a string such as "
                   "\"0_5\"", f"{where}.model_size_in_billions")
    for key in _SPEC_STRS:
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise _bad(f"`{where}.{key}` must be a string", f"{where}.{key}")
    uri_key = "model_uri" if spec.get("model_uri") else "model_path"
    if spec.get(uri_key):
        _check_uri(spec[uri_key], f"{where}.{uri_key}")
    elif not spec.get("model_id") and not spec.get("offline_package"):
        raise _bad(f"`{where}` does not say where its files are: give `model_uri` (a local "
                   "path) or `model_id` (a hub repository)", f"{where}.model_uri")


def _check_fields(model_type: str, data: Mapping[str, Any]) -> None:
    """The fields every type shares, then the type's own (its ``family_check``)."""
    for key in _STR_LISTS:
        check_str_list(data, key)
    for key in _OPTIONAL_STRS:
        check_optional_str(data, key)
    load_target(find_model_type(model_type).family_check)(data)


def _as_object(model: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    if isinstance(model, Mapping):
        return dict(model)
    if not isinstance(model, str):
        raise _bad("`model` must be the family definition as a JSON string", "model")
    try:
        data = json.loads(model)
    except ValueError as exc:
        raise _bad(f"`model` is not valid JSON: {exc}", "model") from None
    if not isinstance(data, dict):
        raise _bad("`model` must be a JSON object (a model family definition)", "model")
    return data


def parse_custom_family(model_type: str, model: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """Validate a family definition (JSON text or dict) for ``model_type``; returns it as a dict.

    Errors are :class:`InvalidRequestError` whose ``param`` names the bad field
    (``model_name``, ``model_specs[0].model_format``, ...). The type's own fields are
    checked by its ``family_check`` in :mod:`xinference.model_types`.
    """
    model_type = normalize_model_type(model_type)
    data = _as_object(model)
    shape = find_model_type(model_type).family_shape
    if shape:
        data = load_target(shape)(data)
    data.pop("built_in", None)
    data.pop("is_builtin", None)
    declared = data.get("model_type")
    if declared is not None and normalize_model_type(declared) != model_type:
        raise _bad(f"`model_type` is {declared!r} but the model is registered as {model_type}; "
                   "make them agree", "model_type")
    data["model_type"] = model_type
    name = data.get("model_name")
    if not isinstance(name, str) or not _NAME.match(name):
        problem = "is required" if name in (None, "") else f"is {name!r}, which is invalid"
        raise _bad(f"`model_name` {problem}: use 1-128 letters, digits, '.', '_' or '-', "
                   "starting with a letter or digit", "model_name")
    specs = data.get("model_specs")
    if not isinstance(specs, list) or not specs:
        raise _bad("`model_specs` must be a non-empty list of specs", "model_specs")
    for index, spec in enumerate(specs):
        _check_spec(spec, index)
    _check_fields(model_type, data)
    return data


def family_from_definition(data: Mapping[str, Any]) -> ModelFamily:
    """The :class:`ModelFamily` of a validated definition, marked as not built in."""
    specs = []
    for raw in data["model_specs"]:
        spec = dict(raw)
        if not spec.get("quantizations") and "quantization" not in spec:
            spec["quantizations"] = ["none"]
        specs.append(spec)
    try:
        return ModelFamily.from_dict(dict(data, model_specs=specs), built_in=False)
    except TypeError as exc:
        raise _bad(f"The model family has a field of the wrong kind: {exc}", "model") from None


def registration_file(registrations_dir: Path, model_type: str, model_name: str) -> Path:
    """``<registrations_dir>/<folder>/<name>.json``, the type's folder (llm, embedding, ...)."""
    folder = find_model_type(normalize_model_type(model_type)).folder
    return Path(registrations_dir) / folder / f"{model_name}.json"


def _write_atomically(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_free(registry: ModelRegistry, family: ModelFamily) -> None:
    try:
        existing = registry.get(family.model_type, family.model_name)
    except ModelNotFoundError:
        return
    kind = "built-in" if existing.built_in else "registered"
    raise DuplicateModelError(
        f"A {kind} {family.model_type} model named {existing.model_name!r} already exists; "
        "choose another model_name" + ("" if existing.built_in else " or unregister it first"),
        param="model_name")


def register_custom_model(model_type: str, model: Union[str, Mapping[str, Any]],
                          persist: bool = False, registry: Optional[ModelRegistry] = None,
                          registrations_dir: Optional[Path] = None) -> ModelFamily:
    """Validate and register a custom family; with ``persist``, also write it to disk.

    ``registry`` defaults to the process registry and ``registrations_dir`` to the
    registry's own. A name already taken (built-in or custom, any case) is a 400.
    """
    registry = registry if registry is not None else get_registry()
    data = parse_custom_family(model_type, model)
    family = family_from_definition(data)
    _check_free(registry, family)
    target_dir = registrations_dir or registry.registrations_dir
    if persist and target_dir is None:
        raise _bad("This server has no folder for persisted registrations", "persist")
    registry.register(family)
    if persist:
        try:
            _write_atomically(registration_file(target_dir, family.model_type,
                                                family.model_name), data)
        except OSError:
            registry.unregister(family.model_type, family.model_name)
            raise
    logger.info("Registered custom %s model %s%s", family.model_type, family.model_name,
                " (persisted)" if persist else "")
    return family


def unregister_custom_model(model_type: str, model_name: str,
                            registry: Optional[ModelRegistry] = None,
                            registrations_dir: Optional[Path] = None) -> None:
    """Remove a custom family and its persisted file; built-ins refuse (400), unknown is 404."""
    registry = registry if registry is not None else get_registry()
    family = registry.get(model_type, model_name)
    registry.unregister(family.model_type, family.model_name)
    target_dir = registrations_dir or registry.registrations_dir
    if target_dir is not None:
        registration_file(target_dir, family.model_type, family.model_name).unlink(missing_ok=True)
    logger.info("Unregistered custom %s model %s", family.model_type, family.model_name)


def read_persisted(registrations_dir: Path) -> List[ModelFamily]:
    """Every persisted registration under ``registrations_dir``; bad files are logged, skipped."""
    root = Path(registrations_dir)
    if not root.is_dir():
        return []
    families = []
    type_of_folder = {t.folder: t.name for t in MODEL_TYPES}
    for path in sorted(root.glob("*/*.json")):
        try:
            model_type = type_of_folder.get(path.parent.name, path.parent.name)
            data = parse_custom_family(model_type, path.read_text(encoding="utf-8"))
            if data["model_name"] != path.stem:
                raise _bad(f"the file is named {path.name} but holds {data['model_name']!r}",
                           "model_name")
            families.append(family_from_definition(data))
        except (OSError, InvalidRequestError) as exc:
            logger.warning("Skipping the persisted registration %s: %s", path, exc)
    return families
