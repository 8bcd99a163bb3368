"""Where the project's own files are: the built-in plugin folders and the default store.

In a checkout (or an editable install) the built-in methods, tasks and hardware profiles
are the repository's top-level folders. A wheel installs them as package data under
`suite/_builtin/` (setup.py maps them there), so `pip install .` works outside a checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent
INSTALLED = PACKAGE / "_builtin"

# Published results (suite/store/published.py): one folder per dataset, shipped in the repo
# and in the wheel as package data of `leaderboard` (which sits beside `suite` either way).
# PEFTBENCH_PUBLISHED names another folder (the tests point it at an empty one, so a
# store they build holds only their own rows).
PUBLISHED = Path(os.environ.get("PEFTBENCH_PUBLISHED") or CHECKOUT / "leaderboard" / "published")

# The results database every command uses unless given --db.
DEFAULT_DB = Path("results") / "peftbench.duckdb"


def cell_log(folder: Path | None, cell_id: str) -> Path | None:
    """A cell's log file in a run's log folder (results/logs/<run_id>/): the worker writes
    it as the cell runs, the driver completes it (suite/driver.py: write_cell_log)."""
    return None if folder is None else folder / f"{cell_id}.log"


def in_checkout() -> bool:
    return (CHECKOUT / "methods").is_dir() and (CHECKOUT / "hardware_profiles").is_dir()


def builtin_dirs() -> dict[str, Path]:
    """The folder of each built-in plugin kind (registry attribute -> folder)."""
    top = CHECKOUT if in_checkout() else INSTALLED
    return {
        "methods": top / "methods",
        "tasks": top / "tasks",
        "profiles": top / "hardware_profiles",
        "posthoc": top / "posthoc",
        "models": PACKAGE / "models",
        "matrices": PACKAGE / "matrices",
    }


# The root paths in rows and source hashes are relative to (the checkout, or the
# installed package's parent).
SOURCE_ROOT = CHECKOUT
