"""Size limits of the house (DESIGN.md rule 8): no Python file over 500 lines, no function
over 60 (nested functions are measured too, and count inside their parent).

    python tools/check_sizes.py [folder or file ...]   # default: xinference tests benchmarks

Prints one line per offender (``path:line: what``) and exits 1 if there is any.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Iterator, List

MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60
DEFAULT_ROOTS = ("xinference", "tests", "benchmarks")


def python_files(roots: List[str]) -> Iterator[Path]:
    for root in map(Path, roots):
        if root.is_file():
            yield root
        else:
            yield from sorted(p for p in root.rglob("*.py") if ".venv" not in p.parts)


def offences(path: Path) -> List[str]:
    """``path:line: what`` for the file's length and each function that is too long."""
    source = path.read_text(encoding="utf-8")
    found = []
    lines = len(source.splitlines())
    if lines > MAX_FILE_LINES:
        found.append((1, f"file has {lines} lines (limit {MAX_FILE_LINES})"))
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append((node.lineno, f"function {node.name}() has {length} lines "
                                           f"(limit {MAX_FUNCTION_LINES})"))
    return [f"{path}:{line}: {what}" for line, what in sorted(found)]


def main(argv: List[str]) -> int:
    found = [line for path in python_files(argv or list(DEFAULT_ROOTS))
             for line in offences(path)]
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} size offence(s): split them (DESIGN.md rule 8)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
