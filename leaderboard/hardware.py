"""The Hardware page's data: recorded profiles and which results ran on each.

`hardware_profiles` (table) and `cell_runs.profile_id` come from the distributed
scheduler; where a database predates them, the profile name and the hardware JSON each
row recorded (`cell_runs.profile`, `cell_runs.hardware`) stand in.
"""

from __future__ import annotations

import pandas as pd

from leaderboard.data import Reader


def profiles(reader: Reader) -> pd.DataFrame:
    """One row per profile: how many results ran on it, and what hardware they recorded."""
    counts = reader.frame(
        "SELECT profile, count(*) AS cell_runs, count(*) FILTER (WHERE status = 'ok') AS ok, "
        "count(DISTINCT task) AS tasks, count(DISTINCT method) AS methods, "
        "string_agg(DISTINCT device, ', ') AS devices, any_value(hardware) AS hardware, "
        "max(finished_at) AS newest FROM cell_runs GROUP BY profile ORDER BY profile"
    )
    if reader.has_table("hardware_profiles"):
        recorded = reader.frame("SELECT * FROM hardware_profiles")
        key = "name" if "name" in recorded.columns else recorded.columns[0]
        recorded = recorded.rename(columns={key: "profile"})
        counts = counts.merge(recorded, on="profile", how="outer", suffixes=("", "_recorded"))
    return counts


def results_on(reader: Reader, profile: str) -> pd.DataFrame:
    """The leaderboard rows measured on one profile (bound parameter)."""
    return reader.frame(
        "SELECT task, model, method, n_seeds, n_failed, mean, ci_low, ci_high, "
        'peak_memory_bytes, train_wall_s, latency_unmerged_s, "rank" FROM leaderboard '
        'WHERE profile = ? ORDER BY task, model, "rank"',
        [profile],
        views=["leaderboard"],
    )


def hardware_data(reader: Reader, profile: str | None = None) -> dict[str, pd.DataFrame]:
    """Everything the Hardware page shows, for one profile (the first one by default)."""
    table = profiles(reader)
    chosen = profile or (table["profile"].iloc[0] if len(table) else None)
    rows = results_on(reader, chosen) if chosen is not None else pd.DataFrame()
    return {"profiles": table, "rows": rows}
