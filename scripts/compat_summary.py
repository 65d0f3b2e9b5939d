#!/usr/bin/env python3
"""Prints the table of client/transport pairs x checklist scenarios (tests/compat/README.md)
from the drivers' results files, and exits non-zero when a cell is missing or failed, or when
a pair claims `n/a` for a scenario that applies to it.

usage: compat_summary.py RESULTS_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PAIRS = ["python-rest", "python-grpc", "node-grpc", "node-rest", "rust-rest"]
SCENARIOS = {
    1: "CreateQueue defaults",
    2: "CreateQueue twice",
    3: "re-create a deleted queue",
    4: "UpdateQueue creates",
    5: "update masks, both spellings",
    6: "generated name, BASIC/FULL",
    7: "duplicate task names",
    8: "GetTask after success",
    9: "dispatch headers 503/404/200",
    10: "deadline 15 s -> 504 retry",
    11: "backoff series",
    12: "max_attempts 3",
    13: "pause / RunTask / resume",
    14: "rate 1/s, concurrency 1",
    15: "purge",
    16: "ListTasks paging",
    17: "RunTask on a future task",
    18: "BatchCreateTasks",
    19: "error body without status",
    20: "invalid tasks",
}
# Where a scenario does not apply (README's "applies to" column).
NOT_APPLICABLE = {
    18: {"node-grpc", "node-rest"},
    19: {"python-rest", "python-grpc", "node-grpc", "node-rest"},
}
MARK = {"pass": "ok", "limitation": "ok*", "n/a": "n/a", "fail": "FAIL"}


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(sys.argv[1])
    data: dict[str, dict] = {}
    clients: dict[str, str] = {}
    for pair in PAIRS:
        path = root / f"{pair}.json"
        if path.is_file():
            doc = json.loads(path.read_text())
            data[pair] = doc.get("results", {})
            clients[pair] = doc.get("client", "")

    problems: list[str] = []
    notes: list[str] = []
    width = max(len(s) for s in SCENARIOS.values()) + 5
    print("compatibility checklist: scenarios x client/transport pairs (tests/compat/README.md)")
    print(f"{'':{width}}" + "".join(f"{p:>13}" for p in PAIRS))
    for n, title in SCENARIOS.items():
        row = f"{n:>2}  {title:{width - 4}}"
        for pair in PAIRS:
            cell = data.get(pair, {}).get(str(n))
            if pair not in data:
                mark = "-"
                problems.append(f"{pair}: no results file")
            elif cell is None:
                mark = "MISSING"
                problems.append(f"{pair} #{n}: not run")
            else:
                status = cell.get("status", "?")
                mark = MARK.get(status, status)
                note = cell.get("note", "")
                if status == "fail":
                    problems.append(f"{pair} #{n}: {note}")
                elif status == "n/a" and pair not in NOT_APPLICABLE.get(n, set()):
                    mark = "N/A!"
                    problems.append(f"{pair} #{n}: claimed n/a but the scenario applies ({note})")
                elif status == "limitation":
                    notes.append(f"{pair} #{n}: {note}")
                elif status not in MARK:
                    problems.append(f"{pair} #{n}: unknown status {status!r}")
            row += f"{mark:>13}"
        print(row)
    print()
    for pair in PAIRS:
        if pair in clients:
            print(f"  {pair}: {clients[pair]}")
    if notes:
        print("\nok* = Stratus answered right; known client limitation:")
        for line in notes:
            print(f"  - {line}")
    # Deduplicate "no results file" lines.
    problems = list(dict.fromkeys(problems))
    if problems:
        print("\nFAILED:")
        for line in problems:
            print(f"  - {line}")
        return 1
    print("\nall applicable scenarios passed under all five pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
