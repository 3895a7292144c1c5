from pathlib import Path

import pytest

from xinference.settings import Settings, SettingsError


def test_defaults():
    s = Settings.from_env({})
    assert s.endpoint == "http://127.0.0.1:9997"
    assert s.model_src == "huggingface" and s.batch_size == 32 and s.batch_interval == 0.003
    assert s.max_tokens is None and s.allow_multi_replica_per_gpu is True


def test_reads_and_converts():
    s = Settings.from_env({"XINFERENCE_HOME": "/tmp/h", "XINFERENCE_MAX_TOKENS": "64",
                           "XINFERENCE_DISABLE_HEALTH_CHECK": "1",
                           "XINFERENCE_MODEL_SRC": "modelscope"})
    assert s.home == Path("/tmp/h") and s.max_tokens == 64 and s.disable_health_check is True
    assert s.logs_dir == Path("/tmp/h/logs")


@pytest.mark.parametrize("env, needle", [
    ({"XINFERENCE_MODEL_SRC": "ftp"}, "XINFERENCE_MODEL_SRC"),
    ({"XINFERENCE_BATCH_SIZE": "many"}, "XINFERENCE_BATCH_SIZE"),
    ({"XINFERENCE_DISABLE_METRICS": "perhaps"}, "XINFERENCE_DISABLE_METRICS"),
])
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(SettingsError, match=needle):
        Settings.from_env(env)
