"""Worker resource snapshots: plain-dict round trips, psutil collection, NVML parsing."""

import json
import sys

import pytest

from xinference.core.resources import (
    GIB,
    GpuInfo,
    WorkerResources,
    collect_gpus,
    collect_local_resources,
    format_bytes,
    host_of,
    parse_visible_devices,
)
from xinference.errors import InvalidRequestError


class FakeNVMLError(Exception):
    pass


class _Memory:
    def __init__(self, total, free):
        self.total, self.free, self.used = total, free, total - free


class _Util:
    def __init__(self, gpu):
        self.gpu = gpu


class FakeNVML:
    """Stands in for the ``pynvml`` module: same function names, a fixed set of devices."""

    NVMLError = FakeNVMLError

    def __init__(self, devices, init_error=False, memory_error=False):
        self.devices = devices
        self.init_error = init_error
        self.memory_error = memory_error
        self.calls = []

    def nvmlInit(self):
        self.calls.append("init")
        if self.init_error:
            raise FakeNVMLError("Driver Not Loaded")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index):
        return self.devices[index]

    def nvmlDeviceGetName(self, handle):
        return handle["name"]

    def nvmlDeviceGetUUID(self, handle):
        return handle["uuid"]

    def nvmlDeviceGetMemoryInfo(self, handle):
        if self.memory_error:
            raise FakeNVMLError("Unknown Error")
        return _Memory(handle["total"], handle["free"])

    def nvmlDeviceGetUtilizationRates(self, handle):
        if handle.get("util") is None:
            raise FakeNVMLError("Not Supported")
        return _Util(handle["util"])


DEVICES = [
    {"name": b"NVIDIA A10", "uuid": "GPU-aaaa-1111", "total": 24 * GIB, "free": 20 * GIB,
     "util": 35},
    {"name": "NVIDIA L4", "uuid": "GPU-bbbb-2222", "total": 22 * GIB, "free": 5 * GIB,
     "util": None},
]


def test_nvml_devices_are_parsed_into_gpu_infos():
    nvml = FakeNVML(DEVICES)
    gpus = collect_gpus(nvml, visible_devices=None)
    assert gpus == [
        GpuInfo(0, "NVIDIA A10", 24 * GIB, 20 * GIB, 35.0),
        GpuInfo(1, "NVIDIA L4", 22 * GIB, 5 * GIB, 0.0),
    ]
    assert nvml.calls == ["init", "shutdown"]


@pytest.mark.parametrize(
    "visible, indexes",
    [("1", [1]), ("0,1", [0, 1]), ("", []), ("GPU-bbbb", [1]), ("GPU-aaaa-1111,1", [0, 1]),
     ("7", [])],
)
def test_cuda_visible_devices_filters_gpus(visible, indexes):
    gpus = collect_gpus(FakeNVML(DEVICES), visible_devices=visible)
    assert [g.index for g in gpus] == indexes


def test_cuda_visible_devices_from_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert [g.index for g in collect_gpus(FakeNVML(DEVICES))] == [1]


def test_nvml_without_driver_means_no_gpus():
    nvml = FakeNVML(DEVICES, init_error=True)
    assert collect_gpus(nvml, visible_devices=None) == []


def test_nvml_error_while_reading_gives_no_gpus_and_still_shuts_down():
    nvml = FakeNVML(DEVICES, memory_error=True)
    assert collect_gpus(nvml, visible_devices=None) == []
    assert nvml.calls == ["init", "shutdown"]


def test_no_pynvml_means_no_gpus(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert collect_gpus() == []


def test_collect_local_resources_reads_cpu_and_memory(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    res = collect_local_resources("127.0.0.1:35001")
    assert res.address == "127.0.0.1:35001"
    assert res.host == "127.0.0.1"
    assert res.cpu_count >= 1
    assert 0 < res.memory_available <= res.memory_total
    assert res.gpus == []


def test_collect_local_resources_with_injected_nvml():
    res = collect_local_resources("10.0.0.5:9000", host="node5", nvml=FakeNVML(DEVICES),
                                  visible_devices="0")
    assert res.host == "node5"
    assert [(g.index, g.name, g.memory_free) for g in res.gpus] == [(0, "NVIDIA A10", 20 * GIB)]


def test_resources_round_trip_through_plain_json():
    res = WorkerResources("10.0.0.2:7000", "10.0.0.2", 16, 64 * GIB, 40 * GIB,
                          [GpuInfo(0, "A10", 24 * GIB, 3 * GIB, 12.5)], collected_at=123.0)
    data = json.loads(json.dumps(res.to_dict()))
    assert data["gpus"][0] == {"index": 0, "name": "A10", "memory_total": 24 * GIB,
                               "memory_free": 3 * GIB, "utilization": 12.5}
    assert WorkerResources.from_dict(data) == res


def test_from_dict_fills_host_from_address_and_accepts_no_gpus():
    res = WorkerResources.from_dict({"address": "node7:1234", "cpu_count": "8",
                                     "memory_total": 100, "memory_available": 50})
    assert (res.host, res.cpu_count, res.gpus) == ("node7", 8, [])


@pytest.mark.parametrize(
    "data, param",
    [
        ({"address": "a:1", "cpu_count": 2, "memory_total": 1}, "memory_available"),
        ({"address": "a:1", "cpu_count": "many", "memory_total": 1, "memory_available": 1},
         "cpu_count"),
        ({"address": "a:1", "cpu_count": 2, "memory_total": 1, "memory_available": 1,
          "gpus": [{"index": 0, "memory_total": 1}]}, "memory_free"),
        ({"address": "a:1", "cpu_count": 2, "memory_total": 1, "memory_available": 1,
          "gpus": "none"}, "gpus"),
    ],
)
def test_from_dict_names_the_bad_field(data, param):
    with pytest.raises(InvalidRequestError) as info:
        WorkerResources.from_dict(data)
    assert info.value.param == param
    assert param in info.value.message


def test_small_helpers():
    assert host_of("10.0.0.2:9999") == "10.0.0.2"
    assert host_of("[::1]:80") == "::1"
    assert host_of("node1") == "node1"
    assert format_bytes(int(3.1 * GIB)) == "3.1 GiB"
    assert parse_visible_devices(None) is None
    assert parse_visible_devices(" 0, 2 ,") == ["0", "2"]
