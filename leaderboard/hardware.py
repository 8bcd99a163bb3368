"""The Hardware page's data: recorded profiles and which results ran on each.

A cell declares a hardware profile by name (`cell_runs.profile`, the YAML in
hardware_profiles/); the scheduler's workers record what they actually had in the
`hardware_profiles` table, linked by `cell_runs.hardware_profile_id`. Where a database
predates that table, the hardware JSON each row recorded (`cell_runs.hardware`) stands in.
One scan of `cell_runs` feeds both summaries.
"""

from __future__ import annotations

import pandas as pd

from leaderboard.catalog import with_names
from leaderboard.data import Reader
from leaderboard.format import nbytes
from leaderboard.pagedata import protocol_names
from suite.results import PHASES, phase_column
from suite.store.schema import MACHINE_KEY


def _has_recorded(reader: Reader) -> bool:
    """Whether this database has the scheduler's table and link column."""
    found = reader.frame(
        "SELECT count(*) AS n FROM information_schema.columns WHERE "
        "(table_name = 'hardware_profiles' AND column_name = 'profile_id') OR "
        "(table_name = 'cell_runs' AND column_name = 'hardware_profile_id')"
    )
    return int(found["n"].iloc[0]) == 2


def _scan(reader: Reader, linked: bool) -> pd.DataFrame:
    link = "hardware_profile_id" if linked else "NULL::VARCHAR AS hardware_profile_id"
    return reader.frame(
        f"SELECT profile, {link}, count(*) AS cell_runs, "
        "count(*) FILTER (WHERE status = 'ok') AS ok, any_value(device) AS device, "
        "any_value(hardware) AS hardware, max(finished_at) AS newest "
        "FROM cell_runs GROUP BY ALL"
    )


def profiles(reader: Reader, scan: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per declared profile: how many results ran on it, and what they recorded."""
    scan = _scan(reader, _has_recorded(reader)) if scan is None else scan
    if scan.empty:
        return scan
    grouped = scan.groupby("profile", sort=True).agg(
        cell_runs=("cell_runs", "sum"),
        ok=("ok", "sum"),
        device=("device", "first"),
        hardware=("hardware", "first"),
        newest=("newest", "max"),
    )
    return grouped.reset_index()


def recorded(reader: Reader, scan: pd.DataFrame | None = None) -> pd.DataFrame:
    """The workers' recorded hardware, with the declared profiles and results that used it."""
    if not _has_recorded(reader):
        return pd.DataFrame()
    scan = _scan(reader, True) if scan is None else scan
    machines = reader.frame("SELECT * FROM hardware_profiles ORDER BY profile_id")
    used = scan.dropna(subset=["hardware_profile_id"]).groupby("hardware_profile_id")
    counts = used.agg(
        cell_runs=("cell_runs", "sum"),
        ok=("ok", "sum"),
        declared_profiles=("profile", lambda p: ", ".join(sorted(set(p)))),
    )
    machines = machines.merge(counts, left_on="profile_id", right_index=True, how="left")
    return same_machines(machines)


def same_machines(machines: pd.DataFrame) -> pd.DataFrame:
    """One row per kind of machine, named in words (`machine`), with `machines` (how many
    recordings), their hosts, results and declared profiles, and the median calibration."""
    if machines.empty:
        return machines
    # The same machine (suite/store/schema.py MACHINE_KEY) is listed once, with its count.
    key = [c for c in MACHINE_KEY if c in machines.columns]
    grouped = machines.groupby(key, dropna=False, sort=False).agg(
        machines=("profile_id", "count"),
        hosts=("hostname", lambda h: ", ".join(sorted({str(v) for v in h.dropna()}))),
        matmul_flops=("matmul_flops", "median"),
        memory_bandwidth_bytes_s=("memory_bandwidth_bytes_s", "median"),
        cell_runs=("cell_runs", "sum"),
        ok=("ok", "sum"),
        declared_profiles=("declared_profiles", _joined),
    )
    out = grouped.reset_index()
    out.insert(0, "machine", [machine_words(r) for r in out.to_dict("records")])
    return out


def _joined(values: pd.Series) -> str:
    return ", ".join(sorted({p for v in values.dropna() for p in str(v).split(", ") if p}))


def machine_words(row: dict) -> str:
    """A recorded machine in words: its accelerator (if any), CPU, cores and memory."""

    def given(name: str):
        value = row.get(name)
        return None if value is None or pd.isna(value) else value

    parts = []
    if given("device_name") and row.get("device_type") not in (None, "cpu"):
        count = int(given("device_count") or 1)
        memory = given("device_memory_bytes")
        gpu = f"{count} x {row['device_name']}" if count > 1 else str(row["device_name"])
        parts.append(gpu + (f" ({nbytes(memory)})" if memory else ""))
    cpu = given("cpu_model") or "unknown CPU"
    cores = given("cpu_cores")
    parts.append(f"{cpu}" + (f", {int(cores)} cores" if cores else ""))
    if given("ram_bytes"):
        parts.append(f"{nbytes(row['ram_bytes'])} RAM")
    return "; ".join(parts)


def results_on(reader: Reader, profile: str) -> pd.DataFrame:
    """The leaderboard rows measured on one profile (bound parameter), by protocol (the
    same method under two budgets is two rows, each naming its protocol, in words in
    `protocol_label`)."""
    rows = reader.frame(
        "SELECT protocol, task, model, method, matrix, n_seeds, n_failed, mean, ci_low, "
        'ci_high, peak_memory_bytes, train_wall_s, latency_unmerged_s, "rank" FROM leaderboard '
        'WHERE profile = ? ORDER BY protocol, task, model, "rank"',
        [profile],
        views=["leaderboard"],
    )
    names = protocol_names(reader)
    return with_names(rows).assign(protocol_label=rows["protocol"].map(lambda p: names.get(p, p)))


def phases_on(reader: Reader, profile: str) -> pd.DataFrame:
    """Where the time of the cells measured on one profile went: mean seconds per phase
    (suite/results.py PHASES) per task, model and method, from the `cell_phases` view;
    empty where the database predates it or no row recorded phases."""
    found = reader.frame(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'cell_phases'"
    )
    if not int(found["n"].iloc[0]):
        return pd.DataFrame()
    means = ", ".join(f"avg({phase_column(p)}) AS {phase_column(p)}" for p in PHASES)
    rows = reader.frame(
        "SELECT task, model, method, string_agg(DISTINCT matrix, ',') AS matrix, count(*) AS "
        f"cells, avg(cell_total_s) AS cell_total_s, {means}, "
        "avg(scheduling_share) AS scheduling_share, avg(model_cached::INTEGER) AS model_cached, "
        "avg(data_cached::INTEGER) AS data_cached "
        "FROM cell_phases WHERE profile = ? GROUP BY ALL ORDER BY task, model, method",
        [profile],
    )
    return with_names(rows)


def hardware_data(reader: Reader, profile: str | None = None) -> dict[str, pd.DataFrame]:
    """Everything the Hardware page shows, for one profile (the first one by default)."""
    scan = _scan(reader, _has_recorded(reader))
    table = profiles(reader, scan)
    chosen = profile or (table["profile"].iloc[0] if len(table) else None)
    rows = results_on(reader, chosen) if chosen is not None else pd.DataFrame()
    phases = phases_on(reader, chosen) if chosen is not None else pd.DataFrame()
    return {"profiles": table, "recorded": recorded(reader, scan), "rows": rows, "phases": phases}
