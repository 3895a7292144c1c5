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


def test_variables_nothing_acts_on_yet_are_refused_not_ignored():
    from xinference.settings import SettingsError, refuse_unsupported

    refuse_unsupported({"XINFERENCE_ALLOWED_IPS": "", "XINFERENCE_HOME": "/tmp/x"})
    with pytest.raises(SettingsError, match="XINFERENCE_ALLOWED_IPS is set.*not enforced"):
        refuse_unsupported({"XINFERENCE_ALLOWED_IPS": "10.0.0.0/8"})
    with pytest.raises(SettingsError, match="XINFERENCE_CSG_TOKEN"):
        refuse_unsupported({"XINFERENCE_CSG_TOKEN": "t"})


@pytest.mark.parametrize("module", ["local", "supervisor", "worker"])
def test_no_server_starts_with_an_ip_allow_list_it_cannot_enforce(module, monkeypatch):
    import importlib

    from click.testing import CliRunner

    cli = importlib.import_module(f"xinference.deploy.{module}")
    monkeypatch.setattr(cli, "run_server", lambda *a, **k: pytest.fail("server started"),
                        raising=False)
    monkeypatch.setattr(cli, "run_local", lambda *a, **k: pytest.fail("server started"),
                        raising=False)
    out = CliRunner().invoke(cli.main, [], env={"XINFERENCE_ALLOWED_IPS": "192.168.0.0/16"})
    assert out.exit_code == 1 and "XINFERENCE_ALLOWED_IPS is set" in out.output
