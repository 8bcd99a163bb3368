"""Every round of a federated run on disk, so a killed run resumes at the last one.

Layout: `<root>/<run_id>/run.json` (what the run is), then per completed round k
`round-<k>.safetensors` (the global adapter after round k; round 0 is the initial one)
and `round-<k>.json` (its metrics and bytes). Each file is written to a temporary name
and renamed, the JSON last: a round counts as completed once its JSON exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


class RunMismatch(ValueError):
    """The folder holds a different run than the one asked to resume."""


class RoundStore:
    def __init__(self, root: Path | str, run_id: str, describe: dict[str, Any]):
        self.dir = Path(root) / run_id
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "run.json"
        if meta.exists():
            found = json.loads(meta.read_text())
            if found != describe:
                raise RunMismatch(f"{self.dir} holds another run: {found} != {describe}")
        else:
            _atomic_text(meta, json.dumps(describe, sort_keys=True, indent=1))

    def _state(self, k: int) -> Path:
        return self.dir / f"round-{k:04d}.safetensors"

    def _metrics(self, k: int) -> Path:
        return self.dir / f"round-{k:04d}.json"

    def last_completed(self) -> int | None:
        """The highest round whose state and metrics are both stored, else None."""
        done = [int(p.stem.split("-")[1]) for p in self.dir.glob("round-*.json")]
        done = [k for k in done if self._state(k).exists()]
        return max(done) if done else None

    def save(self, k: int, state: dict[str, torch.Tensor], metrics: dict[str, Any]) -> None:
        tmp = self._state(k).with_name(self._state(k).name + ".tmp")
        save_file({n: t.detach().cpu().contiguous() for n, t in state.items()}, str(tmp))
        os.replace(tmp, self._state(k))
        _atomic_text(self._metrics(k), json.dumps({"round": k, **metrics}, sort_keys=True))

    def state(self, k: int) -> dict[str, torch.Tensor]:
        return load_file(str(self._state(k)))

    def metrics(self) -> list[dict[str, Any]]:
        """Every completed round's metrics, in round order (the round table)."""
        last = self.last_completed()
        if last is None:
            return []
        return [json.loads(self._metrics(k).read_text()) for k in range(last + 1)]


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
