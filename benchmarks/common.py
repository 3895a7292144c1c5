"""Pure parts of the harness: statistics, result rows with targets, the table, the JSON file."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float]) -> Dict[str, float]:
    """Count, p50, p95, mean, min and max of ``values``."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "mean": sum(values) / len(values), "min": min(values), "max": max(values)}


def cpu_delta(before: Dict[str, float], after: Dict[str, float],
              per: float = 1.0, scale: float = 1000.0) -> Dict[str, float]:
    """CPU used between two snapshots, by process role and in total, divided by ``per``.

    The default ``scale`` gives milliseconds.
    """
    out = {k: (after[k] - before.get(k, 0.0)) * scale / per for k in after}
    out["total"] = sum(out.values())
    return out


@dataclass(frozen=True)
class Target:
    """A goal for a row: ``kind`` is delta_max, ratio_min, served_max or served_min."""

    kind: str
    value: float

    def describe(self, unit: str) -> str:
        if self.kind == "delta_max":
            return f"served-direct < {self.value:g} {unit}"
        if self.kind == "ratio_min":
            return f"ratio >= {self.value:g}"
        if self.kind == "served_max":
            return f"served < {self.value:g} {unit}"
        if self.kind == "served_min":
            return f"served >= {self.value:g} {unit}"
        raise ValueError(f"unknown target kind {self.kind!r}")

    def met(self, served: Optional[float], direct: Optional[float]) -> Optional[bool]:
        """True/False when the figures needed are there, else None."""
        if served is None:
            return None
        if self.kind == "served_max":
            return served < self.value
        if self.kind == "served_min":
            return served >= self.value
        if direct is None:
            return None
        if self.kind == "delta_max":
            return served - direct < self.value
        if self.kind == "ratio_min":
            return direct > 0 and served / direct >= self.value
        raise ValueError(f"unknown target kind {self.kind!r}")


@dataclass
class Row:
    """One figure served through the platform, its direct twin and their ratio."""

    section: str
    name: str
    unit: str
    served: Optional[float]
    direct: Optional[float] = None
    target: Optional[Target] = None
    note: str = ""

    @property
    def ratio(self) -> Optional[float]:
        if self.served is None or not self.direct:
            return None
        return self.served / self.direct

    @property
    def ok(self) -> Optional[bool]:
        return None if self.target is None else self.target.met(self.served, self.direct)

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out["target"] = self.target.describe(self.unit) if self.target else None
        out["ratio"], out["ok"] = self.ratio, self.ok
        return out


@dataclass
class Report:
    """Everything one run produced: rows for the table, raw details, skips, errors."""

    meta: Dict[str, Any] = field(default_factory=dict)
    rows: List[Row] = field(default_factory=list)
    details: Dict[str, Any] = field(default_factory=dict)
    skipped: List[Dict[str, str]] = field(default_factory=list)
    errors: List[Dict[str, str]] = field(default_factory=list)

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)

    def skip(self, section: str, reason: str) -> None:
        self.skipped.append({"section": section, "reason": reason})

    def error(self, section: str, message: str) -> None:
        self.errors.append({"section": section, "message": message})

    def to_dict(self) -> Dict[str, Any]:
        return {"meta": self.meta, "rows": [r.to_dict() for r in self.rows],
                "details": self.details, "skipped": self.skipped, "errors": self.errors}

    def write_json(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        os.replace(tmp, path)
        return path


def fmt(value: Optional[float]) -> str:
    """A number in a few significant digits; ``-`` for none."""
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.01 or value == 0:
        return f"{value:.2f}"
    return f"{value:.2g}"


def _verdict(row: Row) -> str:
    return {True: "OK", False: "MISS", None: ""}[row.ok]


def format_table(rows: Iterable[Row]) -> str:
    """The rows as an aligned text table, grouped by section in the given order."""
    header = ("measurement", "unit", "served", "direct", "ratio", "target", "")
    lines: List[Sequence[str]] = []
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            lines.append((f"[{section}]", "", "", "", "", "", ""))
        target = row.target.describe(row.unit) if row.target else ""
        lines.append(("  " + row.name, row.unit, fmt(row.served), fmt(row.direct),
                      fmt(row.ratio), target, _verdict(row)))
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    right = {2, 3, 4}

    def render(line: Sequence[str]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(line, widths))]
        return "  ".join(cells).rstrip()

    rule = "-" * len(render(header))
    return "\n".join([render(header), rule, *(render(line) for line in lines)])


def machine_facts() -> Dict[str, Any]:
    """Where and when the run happened (load average included: the box is shared)."""
    facts: Dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             "python": sys.version.split()[0], "platform": platform.platform(),
                             "cpus": os.cpu_count(),
                             "bytecode_cache": not sys.dont_write_bytecode}
    if hasattr(os, "getloadavg"):
        facts["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return facts


def package_versions(names: Iterable[str]) -> Dict[str, Optional[str]]:
    """Installed versions of ``names`` (None when not installed)."""
    from importlib import metadata

    out: Dict[str, Optional[str]] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
