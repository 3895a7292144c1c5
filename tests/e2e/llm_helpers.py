"""Helpers of the LLM end-to-end tests: shared test assets, chunk gathering, schema checks."""

import importlib.util
import json
import time
from pathlib import Path

import psutil

_TESTS = Path(__file__).parents[1]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tm = _load("tiny_models", _TESTS / "llm" / "tiny_models.py")
TOOL_TEMPLATE = _load("llama_cpp_cases", _TESTS / "engines" / "test_llama_cpp.py").TOOL_TEMPLATE

NAMED = {"type": "function", "function": {"name": "get_weather"}}
TIME_TOOL = {"type": "function", "function": {
    "name": "get_time", "description": "Current time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}},
                   "required": ["zone"], "additionalProperties": False}}}
CITY_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}},
                   "required": ["city"], "additionalProperties": False}}}
SEA_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def gather(chunks):
    """Accumulate SDK chunks per choice: content, reasoning, tool calls, finish, usage, order."""
    out, usage = {}, None
    for chunk in chunks:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            acc = out.setdefault(choice.index, {"content": "", "reasoning": "", "calls": {},
                                                "finish": None, "order": [], "tool_deltas": []})
            delta = choice.delta
            if delta.content:
                acc["content"] += delta.content
                acc["order"].append("content")
            reasoning = getattr(delta, "reasoning_content", None)
            if reasoning:
                acc["reasoning"] += reasoning
                acc["order"].append("reasoning")
            for call in delta.tool_calls or []:
                acc["tool_deltas"].append(call)
                slot = acc["calls"].setdefault(call.index,
                                               {"id": None, "name": "", "arguments": ""})
                slot["id"] = call.id or slot["id"]
                slot["name"] += (call.function and call.function.name) or ""
                slot["arguments"] += (call.function and call.function.arguments) or ""
            acc["finish"] = choice.finish_reason or acc["finish"]
    return out, usage


def check_schema(value, schema):
    """A small JSON-schema check (type, enum, properties, required, additionalProperties, items)."""
    kinds = {"object": dict, "string": str, "integer": int, "number": (int, float),
             "boolean": bool, "array": list, "null": type(None)}
    kind = schema.get("type")
    if kind:
        assert isinstance(value, kinds[kind]), f"{value!r} is not {kind}"
        assert kind in ("boolean",) or not isinstance(value, bool), f"{value!r} is a boolean"
    if "enum" in schema:
        assert value in schema["enum"]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        assert set(schema.get("required", [])) <= set(value), value
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(props), value
        for key, item in value.items():
            if key in props:
                check_schema(item, props[key])
    if isinstance(value, list) and "items" in schema:
        for item in value:
            check_schema(item, schema["items"])


def weather_history():
    """Three weather questions answered through the tool, then a fourth (few-shot for SmolLM2)."""
    messages = []
    for i, city in enumerate(["London", "Berlin", "Madrid"]):
        call = {"id": f"call_{i}", "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
        messages += [{"role": "user", "content": f"What is the weather in {city}?"},
                     {"role": "assistant", "content": None, "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": f"call_{i}", "content": "sunny"},
                     {"role": "assistant", "content": f"It is sunny in {city}."}]
    return messages + [{"role": "user", "content": "What is the weather in Paris?"}]


def cpu_seconds(pid, seconds=1.0):
    """CPU time (user + system) process ``pid`` and its children spend over ``seconds``."""
    def used():
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
        return sum(sum(p.cpu_times()[:2]) for p in procs)

    before = used()
    time.sleep(seconds)
    return used() - before
