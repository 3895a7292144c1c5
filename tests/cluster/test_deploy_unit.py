"""Worker start-up: the supervisor health check as the XINFERENCE_HEALTH_CHECK_* settings say."""

import asyncio
import http.server
import threading
import time

import pytest

from helpers import free_port
from xinference.core.supervisor import monitor_period
from xinference.deploy.supervisor import actor_host, pool_address
from xinference.deploy.worker import SupervisorUnreachable, check_supervisor
from xinference.settings import Settings


class _AddressHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server API
        body = b'"127.0.0.1:4321"' if self.path == "/v1/address" else b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_supervisor():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AddressHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_health_check_finds_the_supervisors_actor_address(fake_supervisor):
    settings = Settings(health_check_failure_threshold=2, health_check_interval=0.05)
    assert asyncio.run(check_supervisor(fake_supervisor, settings)) == "127.0.0.1:4321"


def test_health_check_gives_up_after_the_threshold_and_says_what_to_do():
    settings = Settings(health_check_failure_threshold=3, health_check_interval=0.1,
                        health_check_timeout=0.5)
    endpoint = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(SupervisorUnreachable, match="did not answer 3 health check"):
        asyncio.run(check_supervisor(endpoint, settings))
    assert 0.2 <= time.monotonic() - started < 5


def test_disabled_health_check_does_not_wait():
    settings = Settings(disable_health_check=True)
    assert asyncio.run(check_supervisor(f"http://127.0.0.1:{free_port()}", settings)) is None


def test_actor_addresses_never_use_a_wildcard_host():
    assert pool_address("127.0.0.1", 1234) == "127.0.0.1:1234"
    assert pool_address("127.0.0.1", None) == "127.0.0.1"
    assert actor_host("0.0.0.0") not in ("0.0.0.0", "")


def test_monitor_checks_often_enough_to_lose_a_worker_on_time():
    assert monitor_period(2.0, 10.0) == 2.0
    assert monitor_period(2.0, 3.0) == 0.75
    assert monitor_period(0.01, 0.01) == 0.05
