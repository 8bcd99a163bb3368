"""Do two budget settings of the learning curves (bench/learning_curves.py) agree? For
each method at one epoch budget, fp32 against the other setting (bf16 autocast and length
bucketing, say): test accuracy of each, the share of identical test predictions, the
discordant pairs and the exact sign-flip (McNemar) p of the paired difference.

  .venv/bin/python bench/curve_agreement.py --db results/curves.duckdb --task rotten-tomatoes --epochs 1
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

PAIRED = """
  SELECT a.correct AS a, b.correct AS b, a.pred_num = b.pred_num AS same
  FROM predictions a JOIN predictions b USING (split, example)
  WHERE a.result_id = ? AND b.result_id = ? AND a.split = 'test'"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args()
    con = duckdb.connect(str(args.db), read_only=True)
    rows = con.execute(SETTINGS, [args.task, args.epochs]).df()
    for method, group in rows.groupby("method"):
        ids = dict(zip(group.setting, group.result_id, strict=True))
        if "fp32" not in ids or len(ids) < 2:
            continue
        for setting, other in ids.items():
            if setting == "fp32":
                continue
            p = con.execute(PAIRED, [ids["fp32"], other]).df()
            b, c = int((p.a & ~p.b).sum()), int((~p.a & p.b).sum())
            pv = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
            print(
                f"{method:5s} fp32 {p.a.mean():.4f} | {setting} {p.b.mean():.4f} "
                f"({p.b.mean() - p.a.mean():+.4f}); same prediction on {p.same.mean():.1%} "
                f"of {len(p)}; discordant {b}/{c}; exact p {pv:.3f}"
            )


if __name__ == "__main__":
    main()
