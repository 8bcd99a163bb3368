"""What `peftbench publish` exports of one track, described once per track beside that
track's store module (trained.py, continual.py, federated.py) and read by the generic
code of suite/store/published.py, which never names a track.

A track's rows live in one attempt table (`runs`: every row carries `protocol`, and a
loaded row is marked with `origin`), with tables that hang off it by result_id
(`extra`), and the hardware profiles its rows ran on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

# A part of a publication: the query that selects the protocol's rows of a table, given
# `ids` (the published result ids) registered as a relation, and the columns that make
# a row of that table unique (so loading twice adds nothing).
Part = tuple[str, list[str]]


@dataclass(frozen=True)
class TrackExport:
    """One track as a publication: its tables, keys, latest rows and manifest fields."""

    # The manifest's `track` (a folder without one is a training publication).
    track: str
    # The attempt table and its columns (a published column today's code lacks is
    # dropped on load; one an older publication lacks stays NULL).
    runs: str
    columns: dict[str, str]
    # SQL: the result_id of the latest attempt of each cell of the protocol (bound `?`),
    # failed ones too (a failure is a result the pages explain).
    latest: str
    # What the manifest counts the rows as ("cells", "rounds").
    unit: str
    # Tables that hang off `runs` by result_id (the runs and hardware profiles are added).
    extra: dict[str, Part] = field(default_factory=dict)
    # The track's own manifest fields, from its published rows (`described` columns).
    described: tuple[str, ...] = ()
    describe: Callable[[pd.DataFrame], dict[str, Any]] = lambda runs: {}
    # What a store needs done once rows were inserted behind its writer's back.
    after_load: Callable[[Any], None] | None = None
    # Files the rows need beyond themselves (an unfinished federated run's last global
    # adapter, to go on from): SQL over the published rows (`ids`) giving each file's name
    # (a path below the folder's files/ and below `file_root`), its source path and its
    # stored sha256; `file_root(store path)`: where a loaded store keeps them.
    files: str | None = None
    file_root: Callable[[Path], Path] | None = None
    # The columns whose sum is a row's CPU seconds, where the track measures them (a
    # federated round: its clients' and its server's, which ran in several processes at
    # once). A row lacking any of them (a store older than they are, a failed round), and
    # every row of a track that names none (one process per cell), counts its wall time
    # x the torch threads of its hardware profile instead; the manifest says how many
    # rows counted which way (`cpu_hours_basis`).
    cpu_seconds: tuple[str, ...] = ()

    def parts(self) -> dict[str, Part]:
        """table -> its part, in load order: the runs first, the hardware profiles last."""
        hardware = (
            "SELECT * FROM hardware_profiles WHERE profile_id IN (SELECT DISTINCT "
            f"hardware_profile_id FROM {self.runs} JOIN ids USING (result_id))"
        )
        return {
            self.runs: (f"SELECT r.* FROM {self.runs} r JOIN ids USING (result_id)", ["result_id"]),
            **self.extra,
            "hardware_profiles": (hardware, ["profile_id"]),
        }


def distinct(values: pd.Series) -> list[str]:
    """The distinct non-null values of a column, sorted, as text (manifest lists)."""
    return sorted(map(str, values.dropna().unique()))
