"""What a protocol found, as Markdown for docs/league.md: per task, each method's score with
its item-level interval and its paired difference from the baseline method (Holm-corrected
exact sign-flip test), the smallest difference the paired test could detect, the Pareto
fronts for trainable parameters, training memory and training time, the expected best
validation score after 1..K tuning trials, and every cell that did not finish ok.

Everything is read from the store's views (suite/store/views.py), so the numbers are the
leaderboard's. Usage:

  .venv/bin/python bench/league_report.py --db results/league.duckdb [--protocol league-v1]
"""

from __future__ import annotations

import argparse
import sys
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


def _p(value) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def results_table(con, protocol: str, task: str) -> tuple[str, pd.DataFrame]:
    rows = con.execute(
        'SELECT * FROM leaderboard WHERE protocol = ? AND task = ? AND NOT stale ORDER BY "rank"',
        [protocol, task],
    ).df()
    lines = [
        "| rank | method | family | accuracy (95% interval) | seeds | vs LoRA (95% interval) "
        "| p (Holm) | verdict | trainable | train time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows.itertuples():
        diff = (
            f"{r.item_diff:+.4f} ({r.item_diff_low:+.4f}, {r.item_diff_high:+.4f})"
            if pd.notna(r.item_diff)
            else "–"
        )
        lines.append(
            f"| {r.rank} | {r.method} | {r.family} | {r.mean:.4f} ({r.ci_low:.4f}, "
            f"{r.ci_high:.4f}) | {r.n_seeds}{'' if not r.n_failed else f' ({r.n_failed} failed)'} "
            f"| {diff} | {_p(r.p_holm if pd.notna(r.p_holm) else None)} | {r.vs_baseline or '–'} "
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
        lines.append(f"- {words}: {points or '–'}")
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


def report(db: Path, protocol: str) -> str:
    con = duckdb.connect(str(db), read_only=True)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--protocol", default="league-v1")
    args = parser.parse_args()
    print(report(args.db, args.protocol))


if __name__ == "__main__":
    main()
