"""`peftbench artifacts gc`: remove the artifacts nothing references."""

from __future__ import annotations

import os


def collect(store, frame, orphans: list[str], unconsumed: bool, dry_run: bool) -> list[str]:
    """Remove orphan files, rows whose file is gone, and (with `unconsumed`) recorded
    artifacts no stored post-hoc run consumed; returns one line per removal."""
    removed = [f"orphan file {p}" for p in orphans]
    gone = [r for r in frame.itertuples() if not r.on_disk]
    removed += [f"row of {r.cell_id} (file {r.path} is gone)" for r in gone]
    idle = [r for r in frame.itertuples() if r.on_disk and r.consumed_by == 0] if unconsumed else []
    removed += [f"{r.cell_id} ({r.method} x {r.task}, {r.bytes:,} bytes)" for r in idle]
    if dry_run:
        return removed
    for path in orphans:
        os.remove(path)
    drop = [r.cell_id for r in [*gone, *idle]]
    for r in idle:
        os.remove(r.path)
    if drop:
        with store.connect() as con:
            con.execute("DELETE FROM artifacts WHERE cell_id IN (SELECT unnest(?))", [drop])
    return removed
