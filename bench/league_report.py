"""What a protocol found, as Markdown for docs/league.md: per task, each method's score with
its item-level interval and its paired difference from the baseline method (Holm-corrected
exact sign-flip test), the smallest difference the paired test could detect, the Pareto
fronts for trainable parameters, training memory and training time, the expected best
validation score after 1..K tuning trials, and every cell that did not finish ok.

Everything is read from the store's views (suite/store/views.py), so the numbers are the
leaderboard's. Usage:

  .venv/bin/python bench/league_report.py --db results/league.duckdb [--protocol league-v1]
  .venv/bin/python bench/league_report.py --published leaderboard/published/league-v1 --write

`--write` rewrites the generated parts of README.md (the results table) and docs/league.md
(the status line and the report), between their `<!-- league-report:NAME begin/end -->`
markers, so what the repository says is what its published dataset holds
(tests/test_league_report.py checks that they agree).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import duckdb
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from leaderboard import format as fmt  # noqa: E402

# Power 0.8 at two-sided alpha 0.05 for a paired test of discordant pairs: the smallest
# accuracy difference detectable is about (z_0.975 + z_0.8) * sqrt(discordance / n).
Z_SUM = 1.959964 + 0.841621

# Each front's cost axis: its words and how its numbers read (the leaderboard's formats).
FRONT_AXES = {
    "trainable_params": ("trainable parameters", fmt.count),
    "training_memory_bytes": ("training memory", fmt.nbytes),
    "train_wall_s": ("training time", fmt.duration),
}


def _diff(r, number, unit: str = "") -> str:
    """A row's paired difference from the baseline method with its interval."""
    if pd.isna(r.item_diff):
        return fmt.MISSING
    return f"{number(r.item_diff)} ({number(r.item_diff_low)}, {number(r.item_diff_high)}){unit}"


def _rows(con, protocol: str, task: str) -> pd.DataFrame:
    """The protocol's current leaderboard rows on one task, best first."""
    return con.execute(
        'SELECT * FROM leaderboard WHERE protocol = ? AND task = ? AND NOT stale ORDER BY "rank"',
        [protocol, task],
    ).df()


def results_table(con, protocol: str, task: str) -> tuple[str, pd.DataFrame]:
    rows = _rows(con, protocol, task)
    lines = [
        "| rank | method | family | accuracy (95% interval) | seeds | vs LoRA (95% interval) "
        "| p (Holm) | verdict | trainable | train time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows.itertuples():
        diff = _diff(r, lambda v: f"{v:+.4f}")
        lines.append(
            f"| {r.rank} | {r.method} | {r.family} | {r.mean:.4f} ({r.ci_low:.4f}, "
            f"{r.ci_high:.4f}) | {r.n_seeds}{'' if not r.n_failed else f' ({r.n_failed} failed)'} "
            f"| {diff} | {fmt.p_value(r.p_holm)} | {r.vs_baseline or fmt.MISSING} "
            f"| {fmt.count(r.trainable_params)} | {fmt.duration(r.train_wall_s)} |"
        )
    return "\n".join(lines), rows


def detectable(rows: pd.DataFrame) -> str:
    """The smallest paired difference the test could resolve, from each method's observed
    discordance with the baseline method (b + c disagreements over n items x seeds)."""
    pairs = rows.dropna(subset=["mcnemar_b", "mcnemar_c", "n_examples"])
    if pairs.empty:
        return "No paired comparisons yet."
    seeds = pairs.n_seeds.clip(lower=1)
    rate = (pairs.mcnemar_b + pairs.mcnemar_c) / (pairs.n_examples * seeds)
    mde = Z_SUM * (rate / (pairs.n_examples * seeds)).pow(0.5)
    return (
        f"Discordance with the baseline method: {rate.min():.1%} to {rate.max():.1%} of "
        f"items per seed; the smallest difference the paired test detects with 80% power "
        f"is about {mde.min():.4f} to {mde.max():.4f} (median {mde.median():.4f}), "
        "treating seeds as independent looks at the items (an optimistic bound)."
    )


def fronts(con, protocol: str, task: str) -> str:
    lines = []
    for axis, (words, cost_text) in FRONT_AXES.items():
        front = con.execute(
            "SELECT method, cost, mean FROM pareto WHERE protocol = ? AND task = ? "
            "AND cost_axis = ? AND on_front AND NOT stale ORDER BY cost",
            [protocol, task, axis],
        ).df()
        points = ", ".join(
            f"{m} ({cost_text(c)}, {q:.4f})" for m, c, q in front.itertuples(index=False)
        )
        lines.append(f"- {words}: {points or fmt.MISSING}")
    return "\n".join(lines)


def tuning(con, protocol: str, task: str) -> str:
    curves = con.execute(
        "SELECT method, k, expected_best_val FROM tuning_curves WHERE protocol = ? "
        "AND task = ? ORDER BY method, k",
        [protocol, task],
    ).df()
    if curves.empty:
        return "No tuning trials stored."
    wide = curves.pivot(index="method", columns="k", values="expected_best_val")
    ks = list(wide.columns)
    lines = ["| method | " + " | ".join(f"k={k}" for k in ks) + " |"]
    lines.append("|---|" + "---|" * len(ks))
    for method, values in wide.iterrows():
        lines.append(f"| {method} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
    return "\n".join(lines)


def failures(con, protocol: str) -> str:
    rows = con.execute(
        "SELECT task, method, phase, seed, status, error FROM results WHERE protocol = ? "
        "AND status <> 'ok' ORDER BY task, method",
        [protocol],
    ).df()
    if rows.empty:
        return "None: every stored cell finished ok."
    out = []
    for r in rows.itertuples():
        last = (r.error or "").strip().splitlines()[-1:] or [""]
        out.append(f"- {r.task} / {r.method} ({r.phase}, seed {r.seed}): {r.status}: {last[0]}")
    return "\n".join(out)


def _connect(db: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection, for a `with` block: closed when the block ends, so a store
    the report read can be opened for writing again in the same process."""
    return duckdb.connect(str(db), read_only=True)


def report(db: Path, protocol: str) -> str:
    with _connect(db) as con:
        return _report(con, protocol)


def _report(con, protocol: str) -> str:
    tasks = [
        t
        for (t,) in con.execute(
            "SELECT DISTINCT task FROM leaderboard WHERE protocol = ? ORDER BY task", [protocol]
        ).fetchall()
    ]
    cells = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE status = 'ok'), "
        "sum(cell_wall_s) / 3600 FROM results WHERE protocol = ?",
        [protocol],
    ).fetchone()
    parts = [
        f"Protocol `{protocol}`: {cells[0]} cells stored ({cells[1]} ok), "
        f"{(cells[2] or 0):.1f} cell-hours."
    ]
    for task in tasks:
        table, rows = results_table(con, protocol, task)
        parts += [f"### {task}", table, detectable(rows), "Pareto fronts (cost, accuracy):",
                  fronts(con, protocol, task), "Expected best validation accuracy after k trials:",
                  tuning(con, protocol, task)]  # fmt: skip
    parts += ["### Cells that did not finish ok", failures(con, protocol)]
    return "\n\n".join(parts)


def _compact(n) -> str:
    """A parameter count as the README writes it: 770, 6.1k, 148k, 22.7M."""
    if n < 1_000:
        return f"{n:.0f}"
    if n < 1_000_000:
        return f"{n / 1e3:.1f}k" if n < 100_000 else f"{n / 1e3:.0f}k"
    return f"{n / 1e6:.1f}M"


def _points(diff: float) -> str:
    return f"{100 * diff:+.1f}"


def _stored(con, protocol: str) -> tuple[int, str]:
    """The protocol's stored cells, and their time in words: wall time (one torch thread
    a cell, on a machine shared with other jobs it counts waiting for a core too), and the
    CPU time the cells that measured it (`cell_cpu_s`) used."""
    n, wall, cpu, measured = con.execute(
        "SELECT count(*), sum(cell_wall_s) / 3600, sum(cell_cpu_s) / 3600, count(cell_cpu_s) "
        "FROM results WHERE protocol = ?",
        [protocol],
    ).fetchone()
    words = f"{wall or 0.0:.1f} cell-hours of wall time"
    if measured:
        words += f"; {cpu:.1f} CPU-hours measured on the {measured} cells that record it"
    return n, words


def _league(protocol: str) -> tuple[str, dict[str, str], int]:
    """The first task of the matrix that defines the protocol, its entries (each label and
    its name as the papers write it: `display` in the method's YAML) and its seeds."""
    from suite.registry import Catalog

    catalog = Catalog.discover()
    specs = [e.spec for e in catalog.matrices]
    spec = next((s for s in specs if s.protocol_name == protocol), None)
    if spec is None:
        known = ", ".join(sorted({s.protocol_name for s in specs}))
        raise SystemExit(f"no matrix defines protocol {protocol!r}; the matrices define: {known}")
    names = {
        e.display: e.written(catalog.methods.get(e.method).spec.display) for e in spec.entries()
    }
    return spec.tasks[0], names, len(spec.seeds)


def complete_rows(con, protocol: str, task: str, seeds: int) -> pd.DataFrame:
    """The leaderboard rows of the entries that finished every seed."""
    rows = _rows(con, protocol, task)
    return rows[(rows.n_seeds >= seeds) & (rows.n_failed.fillna(0) == 0)]


def readme_table(con, protocol: str) -> str:
    """The README's results table: the complete entries of the first task, best first."""
    task, names, seeds = _league(protocol)
    rows = complete_rows(con, protocol, task, seeds)
    n, hours = _stored(con, protocol)
    lines = [
        f"**{len(rows)} of {len(names)} entries are complete on `{task}`** ({n} cells, {hours}).",
        "",
        "| method | accuracy (95% interval) | vs LoRA (95% interval) | Holm p | trainable |",
        "|---|---|---|---|---|",
    ]
    for r in rows.itertuples():
        diff = _diff(r, _points, " points")
        p = fmt.p_value(r.p_holm)
        lines.append(
            f"| {names.get(r.method, r.method)} | {r.mean:.3f} ({r.ci_low:.3f}, {r.ci_high:.3f}) "
            f"| {diff} | {p} | {_compact(r.trainable_params)} |"
        )
    return "\n".join(lines)


def status(con, protocol: str) -> str:
    """docs/league.md's status line: how many entries are complete and what is stored."""
    task, names, seeds = _league(protocol)
    rows = complete_rows(con, protocol, task, seeds)
    n, hours = _stored(con, protocol)
    return (
        f"**{len(rows)} of its {len(names)} entries are complete on `{task}`** ({seeds} seeds "
        f"after the tuning trials; {n} cells in all, {hours})."
    )


def splice(text: str, name: str, body: str) -> str:
    """`text` with the part between the markers named `name` replaced by `body`."""
    begin, end = f"<!-- league-report:{name} begin -->", f"<!-- league-report:{name} end -->"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"no {begin} ... {end} markers")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text, count=1)


def generated(db: Path, protocol: str) -> dict[str, dict[str, str]]:
    """Each file's generated parts, by marker name."""
    with _connect(db) as con:
        return {
            "README.md": {"table": readme_table(con, protocol)},
            "docs/league.md": {"status": status(con, protocol), "report": _report(con, protocol)},
        }


def store_of(folder: Path, into: Path) -> Path:
    """A fresh store holding one published dataset (what the repository ships)."""
    from suite.store.published import load_published
    from suite.store.store import Store

    db = into / "published.duckdb"
    load_published(Store(db), folder)
    return db


def write(root: Path, parts: dict[str, dict[str, str]]) -> None:
    for name, bodies in parts.items():
        path = root / name
        text = path.read_text()
        for marker, body in bodies.items():
            text = splice(text, marker, body)
        path.write_text(text)
        print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", type=Path, help="a results store")
    source.add_argument("--published", type=Path, help="a published dataset folder")
    parser.add_argument("--protocol", default="league-v1")
    parser.add_argument(
        "--write", action="store_true", help="rewrite the generated parts of README.md and "
        "docs/league.md instead of printing the report"
    )  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or store_of(args.published, Path(tmp))
        if args.write:
            write(Path(__file__).resolve().parents[1], generated(db, args.protocol))
        else:
            print(report(db, args.protocol))


if __name__ == "__main__":
    main()
