"""Model families as data: one JSON file per family under ``families/<type>/``.

A family (:class:`ModelFamily`) names a model and lists its specs
(:class:`ModelSpec`): one per format and size, each with its quantizations and
where its files come from. The catalogue is read lazily, on first lookup.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..errors import InvalidRequestError, ModelNotFoundError
from ..model_types import MODEL_TYPES as _REGISTERED_TYPES
from ..model_types import find_model_type, type_names

FAMILIES_DIR = Path(__file__).parent / "families"
MODEL_TYPES = type_names()
_TYPE_DIRS = {t.name: t.folder for t in _REGISTERED_TYPES}


def normalize_model_type(model_type: Optional[str]) -> str:
    """Accept any capitalisation (``llm``, ``LLM``, ``Embedding``) and return the canonical name."""
    found = find_model_type(model_type or "LLM")
    if found is None:
        raise InvalidRequestError(
            f"Unknown model_type {model_type!r}; expected one of {', '.join(MODEL_TYPES)}",
            param="model_type",
        )
    return found.name


@dataclass
class ModelSpec:
    """One way to get a family's weights: a format, a size and the quantizations it comes in."""

    model_format: str
    quantizations: List[str]
    model_size_in_billions: Optional[str] = None
    model_id: Optional[str] = None
    model_revision: Optional[str] = None
    model_file_name_template: Optional[str] = None
    offline_package: Optional[str] = None
    model_hub: str = "huggingface"
    model_uri: Optional[str] = None  # custom models: a local file or folder (``file://`` allowed)

    def file_name(self, quantization: Optional[str]) -> Optional[str]:
        if not self.model_file_name_template:
            return None
        return self.model_file_name_template.format(quantization=quantization or "")


@dataclass
class ModelFamily:
    """A named model and its specs, as stored in one family JSON file."""

    model_type: str
    model_name: str
    model_specs: List[ModelSpec]
    model_lang: List[str] = field(default_factory=list)
    model_ability: List[str] = field(default_factory=list)
    model_description: str = ""
    model_family: Optional[str] = None
    context_length: Optional[int] = None
    chat_template: Optional[str] = None
    stop: List[str] = field(default_factory=list)
    reasoning_start_tag: Optional[str] = None
    reasoning_end_tag: Optional[str] = None
    tool_call_format: Optional[str] = None
    dimensions: Optional[int] = None
    max_tokens: Optional[int] = None
    built_in: bool = True
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], built_in: bool = True) -> "ModelFamily":
        data = dict(data)
        data.pop("built_in", None)
        try:
            raw_specs = data.pop("model_specs")
            model_type = normalize_model_type(data.pop("model_type", "LLM"))
            name = data.pop("model_name")
        except KeyError as exc:
            raise InvalidRequestError(
                f"Model family is missing the field {exc.args[0]!r}") from None
        specs = [_spec_from_dict(s) for s in raw_specs]
        known = set(cls.__dataclass_fields__) - {"extra", "built_in"}
        fields_ = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(model_type=model_type, model_name=name, model_specs=specs,
                   built_in=built_in, extra=extra, **fields_)

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("extra"))
        return out

    def find_specs(self, model_format: Optional[str] = None, size: Optional[str] = None,
                   quantization: Optional[str] = None) -> List[ModelSpec]:
        """Specs matching the given filters (``None`` matches anything)."""
        out = []
        for spec in self.model_specs:
            if model_format and spec.model_format.lower() != model_format.lower():
                continue
            if size is not None and not _same_size(spec.model_size_in_billions, size):
                continue
            if quantization and quantization.lower() not in [q.lower() for q in spec.quantizations]:
                continue
            out.append(spec)
        return out


def _spec_from_dict(data: Dict[str, Any]) -> ModelSpec:
    data = dict(data)
    if "quantization" in data and "quantizations" not in data:
        data["quantizations"] = [data.pop("quantization")]
    if data.get("model_path") and not data.get("model_uri"):
        data["model_uri"] = data["model_path"]
    size = data.get("model_size_in_billions")
    data["model_size_in_billions"] = None if size is None else str(size)
    known = set(ModelSpec.__dataclass_fields__)
    return ModelSpec(**{k: v for k, v in data.items() if k in known})


def _same_size(spec_size: Optional[str], wanted: Any) -> bool:
    if spec_size is None:
        return wanted in (None, "", "None")
    norm = lambda s: str(s).replace("_", ".").rstrip("0").rstrip(".")  # noqa: E731
    return norm(spec_size) == norm(wanted)


class ModelRegistry:
    """Built-in families (from ``families/``) plus user registrations, looked up by type and name.

    ``registrations_dir``: where persisted custom registrations live
    (``<dir>/<type>/<name>.json``); they are read with the built-ins, on first lookup.
    """

    def __init__(self, families_dir: Path = FAMILIES_DIR,
                 registrations_dir: Optional[Path] = None):
        self._families_dir = families_dir
        self.registrations_dir = registrations_dir
        self._lock = threading.Lock()
        self._families: Optional[Dict[str, Dict[str, ModelFamily]]] = None

    def _load(self) -> Dict[str, Dict[str, ModelFamily]]:
        with self._lock:
            if self._families is None:
                families: Dict[str, Dict[str, ModelFamily]] = {t: {} for t in MODEL_TYPES}
                for model_type, sub in _TYPE_DIRS.items():
                    for path in sorted((self._families_dir / sub).glob("*.json")):
                        family = ModelFamily.from_dict(json.loads(path.read_text()))
                        template = path.with_suffix(".jinja")
                        if family.chat_template is None and template.exists():
                            family.chat_template = template.read_text()
                        families[model_type][family.model_name] = family
                if self.registrations_dir is not None:
                    from .custom import read_persisted

                    for family in read_persisted(self.registrations_dir):
                        families[family.model_type].setdefault(family.model_name, family)
                self._families = families
            return self._families

    def list(self, model_type: str) -> List[ModelFamily]:
        return list(self._load()[normalize_model_type(model_type)].values())

    def get(self, model_type: str, model_name: str) -> ModelFamily:
        """The family named ``model_name``; raises :class:`ModelNotFoundError` naming it."""
        model_type = normalize_model_type(model_type)
        by_name = self._load()[model_type]
        family = by_name.get(model_name)
        if family is None:
            lowered = {k.lower(): v for k, v in by_name.items()}
            family = lowered.get(model_name.lower())
        if family is None:
            raise ModelNotFoundError(
                f"No {model_type} model named {model_name!r} is registered; "
                f"`xinference registrations -t {model_type}` lists the known ones",
                param="model_name",
            )
        return family

    def find_any_type(self, model_name: str) -> ModelFamily:
        """Look a name up across all model types (for ``/v1/engines/{name}``)."""
        for model_type in MODEL_TYPES:
            try:
                return self.get(model_type, model_name)
            except ModelNotFoundError:
                continue
        raise ModelNotFoundError(f"No model named {model_name!r} is registered", param="model_name")

    def register(self, family: ModelFamily, overwrite: bool = False) -> None:
        from ..errors import DuplicateModelError

        by_name = self._load()[family.model_type]
        if family.model_name in by_name and not overwrite:
            raise DuplicateModelError(
                f"A {family.model_type} model named {family.model_name!r} already exists")
        by_name[family.model_name] = family

    def unregister(self, model_type: str, model_name: str) -> None:
        family = self.get(model_type, model_name)
        if family.built_in:
            raise InvalidRequestError(f"{model_name!r} is built in and cannot be unregistered",
                                      param="model_name")
        del self._load()[family.model_type][family.model_name]


_default: Optional[ModelRegistry] = None


def get_registry() -> ModelRegistry:
    """The process-wide registry of model families."""
    global _default
    if _default is None:
        from ..settings import get_settings

        _default = ModelRegistry(registrations_dir=get_settings().registrations_dir)
    return _default
