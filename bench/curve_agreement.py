"""Do two budget settings agree? Either two settings of the learning curves
(bench/learning_curves.py) at one epoch budget, fp32 against the other setting (bf16
autocast and length bucketing, say), or two protocols cell for cell (`--protocols A B`:
the same method, task, model and seed under each, e.g. llm-v1's fp32 cell against
llm-v2's bf16 one). For each pair: test accuracy of each, the share of identical test
predictions, the discordant pairs and the exact sign-flip (McNemar) p of the paired
difference.

  .venv/bin/python bench/curve_agreement.py --db results/curves.duckdb --task rotten-tomatoes --epochs 1
  .venv/bin/python bench/curve_agreement.py --db results/llm.duckdb --task rotten-tomatoes-mc --protocols llm-v1 llm-v2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import duckdb
from scipy.stats import binomtest

SETTINGS = """
  SELECT method, result_id,
    concat_ws(' ', coalesce(json_extract_string(budget, '$.autocast'), 'fp32'),
              'bucket ' || json_extract_string(budget, '$.length_bucket_window')) AS setting
  FROM results WHERE task = ? AND status = 'ok' AND matrix LIKE 'curve-%'
    AND CAST(json_extract(budget, '$.epochs') AS DOUBLE) = ?"""

# Cells that score the test split (not tuning trials) under each of two protocols.
PROTOCOL_PAIRS = """
  SELECT a.method || ' ' || a.model || ' seed ' || a.seed AS cell,
         a.result_id AS a_id, b.result_id AS b_id
  FROM results a JOIN results b USING (method, model, task, seed)
  WHERE a.task = ? AND a.protocol = ? AND b.protocol = ?
    AND a.status = 'ok' AND b.status = 'ok'
    AND coalesce(a.phase, 'single') <> 'trial' AND coalesce(b.phase, 'single') <> 'trial'
  ORDER BY cell"""

PAIRED = """
  SELECT a.correct AS a, b.correct AS b, a.pred_num = b.pred_num AS same
  FROM predictions a JOIN predictions b USING (split, example)
  WHERE a.result_id = ? AND b.result_id = ? AND a.split = 'test'"""


def paired(con, a_id: str, b_id: str) -> str:
    """The two cells' test accuracies, their shared predictions and the exact paired test."""
    p = con.execute(PAIRED, [a_id, b_id]).df()
    b, c = int((p.a & ~p.b).sum()), int((~p.a & p.b).sum())
    pv = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return (
        f"{p.a.mean():.4f} | {p.b.mean():.4f} ({p.b.mean() - p.a.mean():+.4f}); same prediction "
        f"on {p.same.mean():.1%} of {len(p)}; discordant {b}/{c}; exact p {pv:.3f}"
    )


def curves(con, task: str, epochs: float) -> None:
    rows = con.execute(SETTINGS, [task, epochs]).df()
    for method, group in rows.groupby("method"):
        ids = dict(zip(group.setting, group.result_id, strict=True))
        for setting, other in ids.items():
            if "fp32" in ids and setting != "fp32":
                print(f"{method:5s} fp32 | {setting}: {paired(con, ids['fp32'], other)}")


def protocols(con, task: str, first: str, second: str) -> None:
    rows = con.execute(PROTOCOL_PAIRS, [task, first, second]).df()
    if rows.empty:
        raise SystemExit(f"no cell of task '{task}' is stored ok under both {first} and {second}")
    for cell, a_id, b_id in rows.itertuples(index=False):
        print(f"{cell}: {first} | {second}: {paired(con, a_id, b_id)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--protocols", nargs=2, metavar=("A", "B"),
                        help="pair the cells of two protocols instead of the curves' settings")  # fmt: skip
    args = parser.parse_args()
    con = duckdb.connect(str(args.db), read_only=True)
    if args.protocols:
        protocols(con, args.task, *args.protocols)
    else:
        curves(con, args.task, args.epochs)


if __name__ == "__main__":
    main()
