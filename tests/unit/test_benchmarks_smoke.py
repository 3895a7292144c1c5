"""The benchmark harness's pure parts: statistics, targets, the table, the JSON file.

No server, no engine and no timing assertion: the figures themselves are printed
by ``python -m benchmarks.run``, never asserted.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root holds benchmarks/

from benchmarks.common import (Report, Row, Target, fmt, format_table,  # noqa: E402
                               percentile, summarize)
from benchmarks.embeddings import make_requests, min_cosine  # noqa: E402
from benchmarks.run import SECTIONS, parse_args, selected_sections  # noqa: E402
from benchmarks.streaming import has_content, timing  # noqa: E402


def test_percentile_interpolates_between_ranks():
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_reports_count_and_spread():
    stats = summarize([10.0, 20.0, 30.0])
    assert stats["n"] == 3 and stats["p50"] == 20.0 and stats["mean"] == 20.0
    assert stats["min"] == 10.0 and stats["max"] == 30.0
    assert summarize([]) == {"n": 0}


@pytest.mark.parametrize("target, served, direct, expected", [
    (Target("delta_max", 2.0), 11.5, 10.0, True),
    (Target("delta_max", 2.0), 12.5, 10.0, False),
    (Target("ratio_min", 0.95), 96.0, 100.0, True),
    (Target("ratio_min", 0.95), 90.0, 100.0, False),
    (Target("served_max", 3.0), 2.9, None, True),
    (Target("served_max", 300), 301, None, False),
    (Target("served_min", 0.9999), 0.99995, None, True),
    (Target("ratio_min", 0.8), 50.0, None, None),
    (Target("delta_max", 2.0), None, 10.0, None),
])
def test_targets_judge_the_figures(target, served, direct, expected):
    assert target.met(served, direct) is expected


def test_row_ratio_and_verdict():
    row = Row("s", "latency p50", "ms", 12.0, 10.0, Target("delta_max", 2.0))
    assert row.ratio == pytest.approx(1.2)
    assert row.ok is False
    assert Row("s", "x", "ms", 5.0).ratio is None
    assert Row("s", "x", "ms", 5.0, 0.0).ratio is None
    data = row.to_dict()
    assert data["target"] == "served-direct < 2 ms" and data["ok"] is False
    assert data["ratio"] == pytest.approx(1.2)


def test_table_groups_sections_and_aligns_columns():
    rows = [Row("1 overhead", "latency p50", "ms", 21.37, 20.0, Target("delta_max", 2.0)),
            Row("1 overhead", "latency p95", "ms", 40.0, 35.0),
            Row("2 streaming", "decode tokens/s", "tok/s", 50.0, 52.0,
                Target("ratio_min", 0.95))]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["measurement", "unit", "served", "direct", "ratio", "target"]
    assert set(lines[1]) == {"-"}
    assert lines[2] == "[1 overhead]"
    assert "[2 streaming]" in lines
    p50 = next(line for line in lines if "latency p50" in line)
    assert "21.4" in p50 and "20.0" in p50 and "1.07" in p50 and p50.endswith("OK")
    decode = next(line for line in lines if "decode" in line)
    assert decode.endswith("OK") and "0.96" in decode
    widths = {len(line) for line in lines[2:] if "latency" in line}
    assert len(widths) <= 2  # rows padded to the same columns (the verdict may be absent)


def test_fmt_keeps_a_few_significant_digits():
    assert fmt(None) == "-"
    assert fmt(1234.4) == "1234"
    assert fmt(12.345) == "12.3"
    assert fmt(1.2345) == "1.23"
    assert fmt(0.0012345) == "0.0012"
    assert fmt(0) == "0.00"


def test_report_writes_json_with_rows_skips_and_errors(tmp_path):
    report = Report(meta={"args": {"quick": True}})
    report.add(Row("4 embeddings", "served vs direct", "sent/s", 80.0, 100.0,
                   Target("ratio_min", 0.8)))
    report.skip("3 concurrency (transformers)", "engine not ready")
    report.error("streaming", "RuntimeError: boom")
    path = report.write_json(tmp_path / "out" / "latest.json")
    data = json.loads(path.read_text())
    assert data["meta"]["args"]["quick"] is True
    assert data["rows"][0]["ratio"] == pytest.approx(0.8) and data["rows"][0]["ok"] is True
    assert data["skipped"] == [{"section": "3 concurrency (transformers)",
                                "reason": "engine not ready"}]
    assert data["errors"][0]["section"] == "streaming"
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_only_selects_measurements_in_run_order():
    assert selected_sections("") == list(SECTIONS)
    assert selected_sections("embeddings,overhead") == ["overhead", "embeddings"]
    with pytest.raises(ValueError, match="unknown measurement 'speed'"):
        selected_sections("speed")
    args = parse_args(["--quick", "--only", "startup", "--json", "x.json"])
    assert args.quick and args.sections == ["startup"] and str(args.json) == "x.json"
    with pytest.raises(SystemExit):
        parse_args(["--only", "nope"])


def test_streaming_timing_and_token_chunks():
    assert has_content({"choices": [{"delta": {"content": "hi"}}]})
    assert not has_content({"choices": [{"delta": {"role": "assistant", "content": ""}}]})
    assert not has_content({"choices": [], "usage": {"completion_tokens": 3}})
    out = timing(0.0, [0.1, 0.2, 0.3, 0.5])
    assert out["tokens"] == 4 and out["ttft_ms"] == pytest.approx(100.0)
    assert out["decode_tps"] == pytest.approx(3 / 0.4)
    assert out["e2e_tps"] == pytest.approx(4 / 0.5)
    assert timing(0.0, []) == {"tokens": 0}


def test_embedding_requests_are_reproducible_and_cosine_is_rowwise():
    first, again = make_requests(256, 32), make_requests(256, 32)
    assert first == again and len(first) == 256
    assert all(1 <= len(r) <= 32 for r in first)
    assert len({s for r in first for s in r}) == sum(map(len, first))
    np = pytest.importorskip("numpy")
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert min_cosine(a, a * 3) == pytest.approx(1.0)
    assert min_cosine(a, np.array([[1.0, 0.0], [2.0, 0.0]])) == pytest.approx(0.0)
