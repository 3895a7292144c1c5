"""GET /metrics and the catalogue routes of a real server."""

import httpx

from .conftest import DEFAULT_MODEL


def test_metrics_count_requests_and_replicas(local_server):
    with httpx.Client(base_url=local_server.base_url, timeout=30) as api:
        api.get("/v1/models")
        api.get("/v1/models/no-such-uid")
        text = api.get("/metrics").text
    assert 'xinference_requests_total{endpoint="list_models",status="200"}' in text
    assert 'xinference_requests_total{endpoint="describe_model",status="404"}' in text
    assert (f'xinference_model_replicas{{model_type="LLM",model_uid="{DEFAULT_MODEL}",'
            'status="READY"} 1.0') in text


def test_vllm_supported_is_not_taken_for_a_model_uid(local_server):
    resp = httpx.get(f"{local_server.base_url}/v1/models/vllm-supported", timeout=10)
    assert resp.status_code == 200
    assert isinstance(resp.json()["model_names"], list)
