"""Seconds per `Store.write` into a large store: the per-cell cost a matrix run pays.

    .venv/bin/python bench/store_write.py [--rows 1000000] [--writes 5]

Builds the leaderboard fixture through `Store.write`, multiplies it in SQL to about
`--rows` result rows (as bench/leaderboard_speed.py does), then times `--writes` more
`Store.write` calls of fixture cells (each one transaction: the row, its metrics, the
cell's `latest_results` row and its comparison group).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import leaderboard_speed  # noqa: E402

from suite.store.store import Store  # noqa: E402
from tests.support.demo import build_demo_db, demo_cells, demo_result  # noqa: E402

PROVENANCE = {"versions": {}, "git_sha": "bench", "git_dirty": False, "hardware": {}, "run_id": "w"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = build_demo_db(Path(tmp) / "base.duckdb")
        rows = leaderboard_speed.build(Path(tmp) / "big.duckdb", args.rows, base)
        store = Store(Path(tmp) / "big.duckdb")
        store.init()
        times = []
        for cell in demo_cells()[: args.writes]:
            start = time.perf_counter()
            store.write(cell, demo_result(cell), PROVENANCE)
            times.append(time.perf_counter() - start)
    print(
        f"{rows:,} result rows: Store.write median {statistics.median(times):.3f} s, "
        f"max {max(times):.3f} s over {len(times)} writes"
    )


if __name__ == "__main__":
    main()
