"""How fast the leaderboard builds each page's data, and how fast it first renders.

    .venv/bin/python bench/leaderboard_speed.py [--rows 1000000] [--browser-rows 100000]

1. Builds the fixture database through the store (`tests/support/demo.py`: real Cells through
   `Store.write`), then multiplies its rows in SQL (tasks, methods, models and seeds
   renamed, scores jittered) up to `--rows` result rows, metrics and baselines included.
2. Times the first read of each analysis view into the in-memory snapshot (paid once per
   version of the file, by the first page that reads the view), then each page's data
   builder (the functions the pages call) on that snapshot with the query cache cleared,
   as on a page switch (goal < 0.5 s per page), and fully cached.
3. With `--browser-rows` rows, starts the app (`peftbench leaderboard`'s command line) and
   measures in headless Chromium the time from navigation until the Overview's chart and
   table are drawn (goal < 3 s): first load of a cold server, then a reload.
Prints seconds and the ratio to each goal (below 1 meets it).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leaderboard import data, hardware, pagedata, saved  # noqa: E402
from suite.store.schema import rebuild_latest  # noqa: E402
from tests.support.demo import build_demo_db  # noqa: E402

PAGE_GOAL_S = 0.5
RENDER_GOAL_S = 3.0
# Factors for tasks, methods and models; seed blocks fill up to the requested row count.
TASKS, METHODS, MODELS = 25, 20, 5


def _multiply(con, seeds: int) -> None:
    """Replicate every row under new task/method/model names and seeds (all but combo 0)."""
    combos = (
        f"range({TASKS}) t(t), range({METHODS}) m(m), range({MODELS}) d(d), range({seeds}) s(s)"
    )
    key = "'-' || t || '-' || m || '-' || d || '-' || s"
    keep = "NOT (t = 0 AND m = 0 AND d = 0 AND s = 0)"
    con.execute("CREATE TEMP TABLE base AS SELECT * FROM cell_runs")
    con.execute(
        f"""INSERT INTO cell_runs SELECT base.* REPLACE (
            md5(result_id || {key}) AS result_id,
            substr(md5(cell_id || {key}), 1, 16) AS cell_id,
            task || '-t' || t AS task, substr(md5(task_hash || t), 1, 16) AS task_hash,
            method || '-m' || m AS method, substr(md5(method_hash || m), 1, 16) AS method_hash,
            model || '-d' || d AS model, seed + 10 * s AS seed,
            test_primary + (hash(cell_id || {key}) % 1000) / 1e5 AS test_primary)
        FROM base, {combos} WHERE {keep}"""
    )
    con.execute(
        f"""INSERT INTO metrics SELECT md5(x.result_id || {key}), x.split, x.metric,
            x.value + (hash(x.result_id || {key}) % 1000) / 1e5, x.version, x.higher_is_better
        FROM metrics x JOIN base USING (result_id), {combos} WHERE {keep}"""
    )
    con.execute(
        f"""INSERT OR REPLACE INTO baselines SELECT task || '-t' || t,
            substr(md5(task_hash || t), 1, 16), kind, split, metric, value
        FROM baselines, range({TASKS}) t(t)"""
    )
    # Per-example predictions of every copied row (about 200 per row).
    con.execute(
        f"""INSERT INTO predictions SELECT md5(x.result_id || {key}) AS result_id, x.split,
            x.example, x.pred_num, x.pred_text, x.gold_num, x.gold_text, x.score, x.correct
        FROM predictions x JOIN base USING (result_id), {combos} WHERE {keep}"""
    )
    _copy_derived(con)


def _copy_derived(con) -> None:
    """What the store computes at write time for each comparison group (intervals,
    comparisons, Pareto-front probabilities, per-example outcomes), copied with the rows
    it belongs to: a copied group is the same computation under new names (seed blocks
    add seeds to the same groups, whose rows are copied once)."""
    combos = f"range({TASKS}) t(t), range({METHODS}) m(m), range({MODELS}) d(d)"
    keep = "NOT (t = 0 AND m = 0 AND d = 0)"
    renamed = (
        "substr(md5(task_hash || t), 1, 16) AS task_hash, method || '-m' || m AS method, "
        "substr(md5(method_hash || m), 1, 16) AS method_hash, model || '-d' || d AS model"
    )
    for table in ("comparisons", "pareto_noise", "example_outcomes"):
        extra = ", task || '-t' || t AS task" if table == "example_outcomes" else ""
        con.execute(
            f"INSERT INTO {table} SELECT x.* REPLACE ({renamed}{extra}) FROM {table} x, {combos} "
            f"WHERE {keep}"
        )


def build(path: Path, rows: int, base_db: Path) -> int:
    """The fixture database (a copy of `base_db`) multiplied to about `rows` result rows."""
    import shutil

    import duckdb

    shutil.copyfile(base_db, path)
    con = duckdb.connect(str(path))
    try:
        base = con.execute("SELECT count(*) FROM cell_runs").fetchone()[0]
        seeds = max(1, math.ceil(rows / (base * TASKS * METHODS * MODELS)))
        _multiply(con, seeds)
        rebuild_latest(con)  # the rows went in behind Store.write's back
        con.execute("CHECKPOINT")
        return con.execute("SELECT count(*) FROM cell_runs").fetchone()[0]
    finally:
        con.close()


def page_builders(reader: data.Reader) -> dict:
    """What each page reads, exactly as the page calls it."""
    first = pagedata.choices(reader).iloc[0]
    filters = pagedata.Filters(first["task"], first["model"], first["profile"])
    everywhere = pagedata.Filters(pagedata.ALL_TASKS, first["model"])
    return {
        "sidebar (protocols + choices + freshness)": lambda: (
            pagedata.protocols(reader),
            pagedata.choices(reader),
            data.freshness(reader),
        ),
        "overview (one task)": lambda: (
            pagedata.primary_metric(reader, filters.task),
            pagedata.overview_data(reader, filters),
        ),
        "overview (all tasks)": lambda: pagedata.overview_data(reader, everywhere),
        "pareto": lambda: pagedata.pareto_data(reader, filters, "trainable_params"),
        "method": lambda: (
            pagedata.methods(reader),
            pagedata.method_data(reader, "lora"),
            pagedata.tuning_curve(reader, "head"),
            pagedata.lost_to_baseline(reader, "head"),
        ),
        # The method page's parts, to see which one costs what.
        "  method: list of methods": lambda: pagedata.methods(reader),
        "  method: rows and curves": lambda: pagedata.method_data(reader, "lora"),
        "  method: tuning curve": lambda: pagedata.tuning_curve(reader, "head"),
        "  method: lost to baseline": lambda: pagedata.lost_to_baseline(reader, "head"),
        "ablations": lambda: [
            saved.run_saved(reader, name, filters.task, filters.model) for name in saved.SAVED
        ],
        "hardware": lambda: hardware.hardware_data(reader),
    }


def time_snapshots(path: Path) -> None:
    """The first read of each analysis view into a fresh snapshot (once per file version):
    `leaderboard` is copied from the file; the views built on it are then evaluated in
    memory from the store's definitions (leaderboard.snapshot)."""
    reader = data.Reader(path)
    data.clear_caches()
    current = data.SNAPSHOTS.for_version(str(path.resolve()), data._file_version(path))
    print(f"\nfirst read of each view into the snapshot, once per database version ({path.name})")
    for name in ("leaderboard", "aggregate", "rank_sweep", "pareto"):
        start = time.perf_counter()
        current.ensure([name], reader.connect)
        took = time.perf_counter() - start
        rows = current.query(f'SELECT count(*) AS n FROM "{name}"', [])["n"].iloc[0]
        print(f"{name:32} {took:11.3f}s  ({rows:,} rows)")


def time_pages(path: Path, repeats: int = 3) -> None:
    """Each page's data on the snapshot (query cache cleared, as on a page switch), then
    fully cached. The first page after a write also pays its views' copy (above)."""
    reader = data.Reader(path)
    builders = page_builders(reader)
    print(f"\npage data from {path.name} (goal {PAGE_GOAL_S} s per page)")
    print(f"{'page':32} {'median':>11} {'max':>8} {'cached':>9} {'ratio':>6}")
    for name, build_page in builders.items():
        warm = []
        for _ in range(repeats):
            with data._LOCK:
                data._CACHE.clear()
            start = time.perf_counter()
            build_page()
            warm.append(time.perf_counter() - start)
        start = time.perf_counter()
        build_page()
        cached = time.perf_counter() - start
        median = statistics.median(warm)
        print(
            f"{name:32} {median:10.3f}s {max(warm):7.3f}s {cached:8.4f}s "
            f"{median / PAGE_GOAL_S:6.2f}"
        )


def time_browser(path: Path) -> None:
    from leaderboard import serve
    from tests.support import browser

    binary = browser.find_chromium()
    if binary is None:
        print("\nbrowser render: skipped (no chromium; `make browser-deps` installs it)")
        return
    port = browser.free_port()
    env = {**os.environ, data.DB_ENV: str(path)}
    server = subprocess.Popen(
        serve.command("127.0.0.1", port),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    chrome = None
    try:
        browser.wait_http(f"http://127.0.0.1:{port}/_stcore/health", timeout_s=120)
        chrome = browser.Browser(binary)
        print(f"\nfirst full render in Chromium, {path.name} (goal {RENDER_GOAL_S} s)")
        for label in ("cold server, first load", "reload"):
            start = time.perf_counter()
            chrome.navigate(f"http://127.0.0.1:{port}/")
            chrome.wait_for(browser.chart_and_table_ready, timeout_s=300, poll_s=0.05)
            took = time.perf_counter() - start
            print(f"{label:32} {took:11.3f}s  ratio {took / RENDER_GOAL_S:.2f}")
            chrome.navigate("about:blank")
    finally:
        if chrome is not None:
            chrome.close()
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="0 skips the page timings")
    parser.add_argument("--browser-rows", type=int, default=100_000)
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the --rows database at this path, and reuse it when it exists",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="peftbench-speed-") as tmp:
        base = build_demo_db(Path(tmp) / "fixture.duckdb")  # through Store.write, once
        if args.rows > 0:
            big = args.keep or Path(tmp) / "rows.duckdb"
            if not big.exists():
                start = time.perf_counter()
                count = build(big, args.rows, base)
                print(f"built {count:,} result rows in {time.perf_counter() - start:.1f} s")
            time_snapshots(big)
            time_pages(big)
        if not args.skip_browser:
            small = Path(tmp) / "browser.duckdb"
            print(f"built {build(small, args.browser_rows, base):,} result rows for the browser")
            time_browser(small)


if __name__ == "__main__":
    main()
