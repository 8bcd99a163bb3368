"""Display tables: view columns renamed for people, each with the kind of number it holds
(one place, so the app and the static report agree). The numbers stay raw underneath;
`Table.styled()` formats them (leaderboard/format.py): counts, bytes, durations, scores,
and "–" where a value is missing; CSV downloads take the view's raw columns instead."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from leaderboard.format import missing, nbytes, styled
from leaderboard.pagedata import Metric
from suite.results import PHASES, phase_column


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    kinds: dict[str, str] = field(default_factory=dict)

    def styled(self):
        return styled(self.frame, self.kinds)

    @property
    def empty(self) -> bool:
        return self.frame.empty


def _table(columns: dict[str, tuple[pd.Series, str]]) -> Table:
    """A table from {label: (values, kind)}."""
    frame = pd.DataFrame({label: values for label, (values, _) in columns.items()})
    return Table(
        frame.reset_index(drop=True), {label: kind for label, (_, kind) in columns.items()}
    )


def _optional(rows: pd.DataFrame, column: str) -> pd.Series:
    """A column older stores lack, as missing values."""
    return rows[column] if column in rows else pd.Series([None] * len(rows), index=rows.index)


def overview_table(rows: pd.DataFrame, metric: Metric) -> Table:
    """One row per method (and profile): score with CI, seeds, and every cost."""
    score = f"{metric.display}{f' ({metric.unit})' if metric.unit else ''}"
    return _table(
        {
            "Rank": (rows["rank"], "text"),
            "Method": (rows["name"], "text"),
            "Source": (source_labels(rows), "text"),
            "Fidelity": (fidelity_labels(rows), "text"),
            "Family": (rows["family"], "text"),
            "Profile": (rows["profile"], "text"),
            score: (rows["mean"], "score"),
            "CI low (95%)": (rows["ci_low"], "score"),
            "CI high (95%)": (rows["ci_high"], "score"),
            "Seeds": (rows["n_seeds"], "text"),
            "Failed": (rows["n_failed"], "text"),
            "Interval over": (rows["ci_kind"], "text"),
            **vs_baseline_columns(rows),
            "p (bootstrap)": (rows["p_boot"], "p"),
            "p (sign-flip; McNemar at 1 seed)": (rows["p_mcnemar"], "p"),
            "vs baseline (seed t-test)": (rows["vs_baseline_t"], "text"),
            "p (t)": (rows["p_value"], "p"),
            "t-test pairs": (rows["n_pairs"], "text"),
            "Trainable params": (rows["trainable_params"], "count"),
            "Trainable share": (rows["trainable_pct"], "percent"),
            "Peak memory": (rows["peak_memory_bytes"], "bytes"),
            "Train time": (rows["train_wall_s"], "duration"),
            "Tokens/s": (_optional(rows, "tokens_per_s"), "count"),
            "Latency unmerged": (rows["latency_unmerged_s"], "duration"),
            "Latency merged": (rows["latency_merged_s"], "duration"),
            "Adapter size": (rows["adapter_bytes"], "bytes"),
            "Stale": (rows["stale"], "text"),
        }
    )


def vs_baseline_columns(rows: pd.DataFrame) -> dict[str, tuple[pd.Series, str]]:
    """The comparison with the baseline method as every page shows it: the verdict and its
    Holm-adjusted p (the leaderboard view's `p_holm`, over the methods of one protocol,
    task, model and profile), with the test it adjusted."""
    return {
        "vs baseline method": (rows["vs_baseline"], "text"),
        "p (Holm)": (rows["p_holm"], "p"),
        "Holm over": (_optional(rows, "holm_test"), "text"),
    }


def source_labels(rows: pd.DataFrame) -> pd.Series:
    """Where a row's results come from: a published dataset (its name) or this store."""
    origin = _optional(rows, "origin")
    return origin.map(lambda o: f"published: {o}" if isinstance(o, str) and o else "your run")


def joined_origins(values: pd.Series) -> str | None:
    """The published datasets a group of rows came from, as `origin` reads (None: none)."""
    return ",".join(sorted({v for v in values.dropna() if v})) or None


def reference_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Numbers reported in papers, each with its source (never ranked with measured rows)."""
    return pd.DataFrame(
        {
            "Method (paper's name)": rows["method"],
            "peftbench method": rows["method_key"].fillna("–"),
            "Model": rows["model"],
            "Training tokens": rows["tokens"],
            f"{rows['metric'].iloc[0] if len(rows) else 'Value'}": rows["value"],
            "Data set": rows["dataset"],
            "Source": rows["paper"] + " (arXiv " + rows["arxiv"] + "), " + rows["table_ref"],
            "Provenance": rows["provenance"],
        }
    ).reset_index(drop=True)


def fidelity_labels(rows: pd.DataFrame) -> pd.Series:
    """`reference`, `paper`, or `reconstructed ⚠` (the method is the project's reading of
    an abstract or summary: docs/fidelity.md), with the method version where above 1."""
    if "fidelity" not in rows:
        return pd.Series(["–"] * len(rows), index=rows.index)
    labels = (
        rows["fidelity"].fillna("–").map(lambda f: "reconstructed ⚠" if f == "reconstructed" else f)
    )
    if "method_version" in rows:
        version = rows["method_version"].fillna(1).astype(int)
        labels = labels + version.map(lambda v: f" (v{v})" if v > 1 else "")
    return labels


def aggregate_table(rows: pd.DataFrame) -> Table:
    """All tasks: mean score and mean rank per method across tasks."""
    return _table(
        {
            "Method": (rows["name"], "text"),
            "Fidelity": (fidelity_labels(rows), "text"),
            "Family": (rows["family"], "text"),
            "Profile": (rows["profile"], "text"),
            "Tasks": (rows["n_tasks"], "text"),
            "Mean score": (rows["mean_score"], "score"),
            "Mean rank": (rows["mean_rank"], "score"),
            "Better than baseline method": (rows["n_better"], "text"),
            "Worse than baseline method": (rows["n_worse"], "text"),
        }
    )


def pareto_table(points: pd.DataFrame, cost_label: str, cost_kind: str) -> Table:
    """The Pareto page's points, front first; the cost in its own kind of units."""
    order = points.sort_values(["on_front", "mean"], ascending=False)
    return _table(
        {
            "Pareto-optimal": (order["on_front"], "text"),
            "Method": (order["name"], "text"),
            "Fidelity": (fidelity_labels(order), "text"),
            "Profile": (order["profile"], "text"),
            "Mean": (order["mean"], "score"),
            "CI low": (order["ci_low"], "score"),
            "CI high": (order["ci_high"], "score"),
            "Seeds": (order["n_seeds"], "text"),
            cost_label: (order["cost"], cost_kind),
            "P(on front)": (order["p_front"], "percent_share"),
            "Cell ids": (order["cell_ids_text"], "text"),
        }
    )


def method_results_table(rows: pd.DataFrame) -> Table:
    """The Method page: the method's leaderboard rows across tasks and models."""
    return _table(
        {
            "Task": (rows["task"], "text"),
            "Model": (rows["model"], "text"),
            "Profile": (rows["profile"], "text"),
            "Seeds": (rows["n_seeds"], "text"),
            "Failed": (rows["n_failed"], "text"),
            "Mean": (rows["mean"], "score"),
            "CI low": (rows["ci_low"], "score"),
            "CI high": (rows["ci_high"], "score"),
            "Rank": (rows["rank"], "text"),
            **vs_baseline_columns(rows),
            "Trainable params": (rows["trainable_params"], "count"),
            "Learning rate": (rows["lr"], "text"),
            "Version": (rows["method_version"], "text"),
            "Stale": (rows["stale"], "text"),
        }
    )


def lost_examples_table(rows: pd.DataFrame) -> Table:
    return _table(
        {
            "Task": (rows["task"], "text"),
            "Model": (rows["model"], "text"),
            "Profile": (rows["profile"], "text"),
            "Example": (rows["example"], "text"),
            "Gold": (rows["gold"], "text"),
            "Prediction": (rows["prediction"], "text"),
            "Baseline method": (rows["baseline_name"], "text"),
            "Its prediction": (rows["baseline_prediction"], "text"),
            "Seeds right": (rows["share_correct"], "percent_share"),
            "Baseline's seeds right": (rows["baseline_share_correct"], "percent_share"),
        }
    )


def profiles_table(profiles: pd.DataFrame) -> Table:
    """Declared hardware profiles: how many results ran on each, and on what."""
    return _table(
        {
            "Profile": (profiles["profile"], "text"),
            "Cell runs": (profiles["cell_runs"], "count"),
            "Ok": (profiles["ok"], "count"),
            "Device": (profiles["device"], "text"),
            "Hardware": (profiles["hardware"].map(describe_hardware), "text"),
            "Newest result": (profiles["newest"], "time"),
        }
    )


def describe_hardware(summary) -> str:
    """A row's recorded hardware (provenance JSON) in words: CPU model, cores, RAM, GPU."""
    if summary is None or (isinstance(summary, float) and pd.isna(summary)):
        return "–"
    facts = json.loads(summary) if isinstance(summary, str) else dict(summary)
    parts = []
    if facts.get("gpu"):
        count = facts.get("gpu_count") or 1
        parts.append(f"{count} x {facts['gpu']}" if count > 1 else str(facts["gpu"]))
    cpu = facts.get("cpu") or facts.get("device")
    if cpu:
        cores = facts.get("cpu_cores") or facts.get("cpus")
        parts.append(f"{cpu}" + (f", {cores} cores" if cores else ""))
    if facts.get("ram_bytes"):
        parts.append(f"{nbytes(facts['ram_bytes'])} RAM")
    return "; ".join(parts) or "–"


def machines_table(machines: pd.DataFrame) -> Table:
    """What the workers recorded, one row per kind of machine (in words, with how many
    recorded it): device, memory, CPU, versions, median calibration."""
    m = machines
    drivers = [
        "; ".join(
            f"{k} {v}" for k, v in (("driver", d), ("CUDA", c), ("cuDNN", n)) if not missing(v)
        )
        or "–"
        for d, c, n in zip(m["driver_version"], m["cuda_version"], m["cudnn_version"], strict=True)
    ]
    return _table(
        {
            "Machine": (m["machine"], "text"),
            "Machines": (m["machines"], "count"),
            "Hosts": (m["hosts"], "text"),
            "Device": (m["device_name"], "text"),
            "Device memory": (m["device_memory_bytes"], "bytes"),
            "CPU": (m["cpu_model"], "text"),
            "Cores": (m["cpu_cores"], "text"),
            "RAM": (m["ram_bytes"], "bytes"),
            "Driver / CUDA": (pd.Series(drivers, index=m.index), "text"),
            "Torch threads": (m["torch_threads"], "text"),
            "Calibrated matmul": (m["matmul_flops"], "flops"),
            "Copy bandwidth": (m["memory_bandwidth_bytes_s"], "bandwidth"),
            "Cell runs": (m["cell_runs"], "count"),
            "Ok": (m["ok"], "count"),
            "Declared profiles": (m["declared_profiles"], "text"),
        }
    )


def results_on_table(rows: pd.DataFrame) -> Table:
    """The leaderboard rows measured on one profile, each with its protocol."""
    return _table(
        {
            "Protocol": (_optional(rows, "protocol_label").fillna(rows["protocol"]), "text"),
            "Task": (rows["task"], "text"),
            "Model": (rows["model"], "text"),
            "Method": (rows["name"], "text"),
            "Seeds": (rows["n_seeds"], "text"),
            "Failed": (rows["n_failed"], "text"),
            "Mean": (rows["mean"], "score"),
            "CI low": (rows["ci_low"], "score"),
            "CI high": (rows["ci_high"], "score"),
            "Peak memory": (rows["peak_memory_bytes"], "bytes"),
            "Train time": (rows["train_wall_s"], "duration"),
            "Latency unmerged": (rows["latency_unmerged_s"], "duration"),
            "Rank": (rows["rank"], "text"),
        }
    )


def phases_table(rows: pd.DataFrame) -> Table:
    """Where a cell's wall time goes, per task, model and method (mean over its cells)."""
    columns: dict[str, tuple[pd.Series, str]] = {
        "Task": (rows["task"], "text"),
        "Model": (rows["model"], "text"),
        "Method": (rows["name"], "text"),
        "Cells": (rows["cells"], "count"),
        "Total": (rows["cell_total_s"], "duration"),
    }
    for phase in PHASES:
        columns[phase.replace("_", " ").capitalize()] = (rows[phase_column(phase)], "duration")
    columns["Scheduling share"] = (rows["scheduling_share"], "percent_share")
    columns["Model cached"] = (rows["model_cached"], "percent_share")
    columns["Data cached"] = (rows["data_cached"], "percent_share")
    return _table(columns)


def merging_table(summary: pd.DataFrame, tasks: list[str]) -> Table:
    """The Merging page: normalised score per source task (merged / the task's own
    adapter), its spread over seeds, the scores behind it, the size kept, the merge time."""
    columns: dict[str, tuple[pd.Series, str]] = {
        "Stage": (summary["stage_name"], "text"),
        "Merge": (summary["name"] if "name" in summary else summary["method"], "text"),
        "Fidelity": (summary["fidelity"], "text"),
        "Inputs": (summary["inputs"], "text"),
        "Model": (summary["model"], "text"),
        "Seeds ok": (summary["seeds"], "text"),
        "Not ok": (summary["failed"], "text"),
    }
    for task in tasks:
        columns[f"Normalised on {task}"] = (_optional(summary, f"norm:{task}"), "score")
        columns[f"Std over seeds ({task})"] = (_optional(summary, f"std:{task}"), "score")
    columns["Mean normalised"] = (_optional(summary, "norm_mean"), "score")
    for task in tasks:
        columns[f"Merged on {task}"] = (_optional(summary, f"merged:{task}"), "score")
        columns[f"Own adapter on {task}"] = (_optional(summary, f"own:{task}"), "score")
    columns["Stored (merged update)"] = (_optional(summary, "stored_bytes"), "bytes")
    columns["Task heads"] = (_optional(summary, "heads_bytes"), "bytes")
    columns["Merge time"] = (_optional(summary, "merge_time_s"), "duration")
    return _table(columns)


def compression_table(rows: pd.DataFrame) -> Table:
    """The Compression page: quality at each method's level beside the dense model's,
    the sparsity reached, stored size and latency against the dense model's."""
    return _table(
        {
            "Method": (rows["name"] if "name" in rows else rows["method"], "text"),
            "Fidelity": (rows["fidelity"], "text"),
            "Level": (rows["level_label"], "text"),
            "Sparsity reached": (rows["sparsity"], "percent_share"),
            "Pattern holds": (rows["pattern_ok"], "text"),
            "Score": (rows["value"], "score"),
            "Dense score": (rows["dense_value"], "score"),
            "Normalised": (rows["normalised"], "score"),
            "Latency": (rows["latency_s"], "duration"),
            "Dense latency": (rows["dense_latency_s"], "duration"),
            "Speed-up": (rows["speedup"], "score"),
            "Stored (compact)": (rows["stored_bytes"], "bytes"),
            "Nonzero params": (rows["nonzero_params"], "count"),
            "Retraining steps": (rows["train_steps"], "count"),
            "Compress time": (rows["compress_time_s"], "duration"),
        }
    )
