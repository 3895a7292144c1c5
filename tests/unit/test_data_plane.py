"""The data plane over real loopback sockets, with a plain coroutine as the replica."""

import asyncio
import os
import sys

import pytest

from xinference.api.router import replica_gone
from xinference.core.data_plane import DataPlaneClient, serve
from xinference.errors import InvalidRequestError


class EngineOwnError(Exception):
    """Stands for an engine library's exception class, which the gateway may not have."""


class Replica:
    """Answers like a model actor's ``serve`` method; records what it was asked."""

    def __init__(self):
        self.calls = []
        self.cancelled = 0
        self.release = asyncio.Event()

    async def dispatch(self, method, request):
        self.calls.append((method, request))
        if request.get("fail"):
            raise InvalidRequestError("bad temperature", param="temperature")
        if request.get("engine_error"):
            raise EngineOwnError("out of memory")
        if request.get("hold"):
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return f'{{"echo": "{request["text"]}"}}'.encode()


async def started(replica, unix_path=None):
    """The replica's server and a client; over the unix socket when ``unix_path`` is given."""
    server = await serve(replica.dispatch, "127.0.0.1", unix_path=unix_path)
    assert server.unix_path == unix_path
    return server, DataPlaneClient("127.0.0.1", server.port, server.unix_path)


@pytest.fixture(params=["tcp", "unix"])
def unix_path(request, tmp_path):
    return str(tmp_path / "replica.sock") if request.param == "unix" else None


def test_the_client_takes_the_unix_socket_when_it_is_on_this_host(tmp_path):
    async def run():
        replica = Replica()
        path = str(tmp_path / "replica.sock")
        server, client = await started(replica, path)
        assert client.unix_path == path
        assert await client.call("serve", {"text": "near"}) == b'{"echo": "near"}'
        (conn,) = client._idle
        assert conn.transport.get_extra_info("peername") == path
        client.close()
        server.close()
        assert not os.path.exists(path)
        far = DataPlaneClient("127.0.0.1", server.port, "/nonexistent/replica.sock")
        assert far.unix_path is None
    asyncio.run(run())


def test_answers_come_back_as_bytes_and_connections_are_reused(unix_path):
    async def run():
        replica = Replica()
        server, client = await started(replica, unix_path)
        assert await client.call("serve", {"text": "hi"}) == b'{"echo": "hi"}'
        assert await client.call("serve", {"text": "again"}) == b'{"echo": "again"}'
        assert len(client._idle) == 1
        assert replica.calls == [("serve", {"text": "hi"}), ("serve", {"text": "again"})]
        client.close()
        server.close()
    asyncio.run(run())


def test_concurrent_calls_each_get_their_own_answer(unix_path):
    async def run():
        replica = Replica()
        server, client = await started(replica, unix_path)
        texts = [f"t{i}" for i in range(20)]
        answers = await asyncio.gather(*(client.call("serve", {"text": t}) for t in texts))
        assert answers == [f'{{"echo": "{t}"}}'.encode() for t in texts]
        client.close()
        server.close()
    asyncio.run(run())


def test_the_replicas_exception_is_raised_with_its_class_and_fields(unix_path):
    async def run():
        server, client = await started(Replica(), unix_path)
        with pytest.raises(InvalidRequestError, match="bad temperature") as info:
            await client.call("serve", {"fail": True})
        assert info.value.param == "temperature"
        assert await client.call("serve", {"text": "still fine"}) == b'{"echo": "still fine"}'
        with pytest.raises(RuntimeError, match="^EngineOwnError: out of memory$"):
            await client.call("serve", {"engine_error": True})
        with pytest.raises(ValueError, match="does not serve 'pid'"):
            await client.call("pid", {})
        client.close()
        server.close()
    asyncio.run(run())


def test_cancelling_a_call_cancels_the_work_in_the_replica(unix_path):
    async def run():
        replica = Replica()
        server, client = await started(replica, unix_path)
        call = asyncio.ensure_future(client.call("serve", {"hold": True, "text": "x"}))
        while not replica.calls:
            await asyncio.sleep(0.01)
        call.cancel()
        for _ in range(100):
            if replica.cancelled:
                break
            await asyncio.sleep(0.01)
        assert replica.cancelled == 1
        assert client._idle == []
        server.close()
    asyncio.run(run())


REPLICA_PROCESS = """
import asyncio, sys
from xinference.core.data_plane import serve

async def dispatch(method, request):
    if request.get("hold"):
        await asyncio.sleep(60)
    return b"{}"

async def main():
    server = await serve(dispatch, "127.0.0.1")
    print(server.port, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def test_a_replica_process_that_dies_raises_a_connection_error():
    async def run():
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", REPLICA_PROCESS,
                                                    stdout=asyncio.subprocess.PIPE)
        try:
            port = int(await asyncio.wait_for(proc.stdout.readline(), 30))
            client = DataPlaneClient("127.0.0.1", port)
            assert await client.call("serve", {}) == b"{}"
            held = asyncio.ensure_future(client.call("serve", {"hold": True}))
            await asyncio.sleep(0.2)
            proc.kill()
            with pytest.raises(ConnectionError) as info:
                await asyncio.wait_for(held, 10)
            assert replica_gone(info.value)
            with pytest.raises(ConnectionError) as info:
                await client.call("serve", {})
            assert replica_gone(info.value)
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
    asyncio.run(run())
