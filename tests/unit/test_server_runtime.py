"""run_server: uvloop, and a private xoscar socket folder that model processes inherit."""

import json
import os
import subprocess
import sys

SCRIPT = """
import asyncio, json, os, sys
from xinference.deploy.runtime import run_server

async def main():
    import xoscar.constants as c
    return {"loop": type(asyncio.get_running_loop()).__module__,
            "env": os.environ.get("XOSCAR_DIR"), "sockets": str(c.XOSCAR_UNIX_SOCKET_DIR),
            "exists": os.path.isdir(os.environ.get("XOSCAR_DIR", "/nonexistent"))}

print(json.dumps(run_server(main())))
"""


def _run(env_extra):
    env = {k: v for k, v in os.environ.items() if k != "XOSCAR_DIR"}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_each_server_gets_its_own_socket_folder_removed_at_exit_and_runs_on_uvloop():
    first, second = _run({}), _run({})
    assert first["loop"].startswith("uvloop")
    assert first["exists"] and first["sockets"].startswith(first["env"])
    assert first["env"] != second["env"]
    assert not os.path.exists(first["env"]) and not os.path.exists(second["env"])


def test_a_folder_chosen_by_the_user_is_kept(tmp_path):
    chosen = str(tmp_path / "mine")
    os.makedirs(chosen)
    result = _run({"XOSCAR_DIR": chosen})
    assert result["env"] == chosen and result["sockets"].startswith(chosen)
    assert os.path.isdir(chosen)
