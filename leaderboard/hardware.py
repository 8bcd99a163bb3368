"""The Hardware page's data: recorded profiles and which results ran on each.

A cell declares a hardware profile by name (`cell_runs.profile`, the YAML in
hardware_profiles/); the scheduler's workers record what they actually had in the
`hardware_profiles` table, linked by `cell_runs.hardware_profile_id`. Where a database
predates that table, the hardware JSON each row recorded (`cell_runs.hardware`) stands in.
"""

from __future__ import annotations

import pandas as pd

from leaderboard.data import Reader


def profiles(reader: Reader) -> pd.DataFrame:
    """One row per profile: how many results ran on it, and what hardware they recorded."""
    counts = reader.frame(
        "SELECT profile, count(*) AS cell_runs, count(*) FILTER (WHERE status = 'ok') AS ok, "
        "any_value(device) AS device, any_value(hardware) AS hardware, "
        "max(finished_at) AS newest FROM cell_runs GROUP BY profile ORDER BY profile"
    )
    return counts


def recorded(reader: Reader) -> pd.DataFrame:
    """The workers' recorded hardware, with the declared profiles and results that used it."""
    if not (
        reader.has_table("hardware_profiles")
        and reader.has_column("cell_runs", "hardware_profile_id")
    ):
        return pd.DataFrame()
    return reader.frame(
        "SELECT h.*, count(c.result_id) AS cell_runs, "
        "count(c.result_id) FILTER (WHERE c.status = 'ok') AS ok, "
        "string_agg(DISTINCT c.profile, ', ') AS declared_profiles "
        "FROM hardware_profiles h LEFT JOIN cell_runs c ON c.hardware_profile_id = h.profile_id "
        "GROUP BY ALL ORDER BY h.profile_id"
    )


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
    return {"profiles": table, "recorded": recorded(reader), "rows": rows}
