"""How a spec is hashed: its semantic part (no prose, no unset options) as canonical JSON.

Cell ids (suite/cells.py), spec hashes stored with every row and the workers' cache keys
all hash this way, so a description edit or a new optional field moves none of them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from suite.specs.base import Frozen


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


# Prose and display fields never change a result, so they stay out of every hash.
NON_SEMANTIC_KEYS = frozenset({"description", "display", "unit"})


def semantic(value: Any) -> Any:
    """The part of a dumped spec that can change a result: no prose, no unset (None) options.

    Dropping None values means adding an optional field to a spec does not move the ids
    of cells that don't use it.
    """
    if isinstance(value, dict):
        return {
            k: semantic(v) for k, v in value.items() if k not in NON_SEMANTIC_KEYS and v is not None
        }
    if isinstance(value, list):
        return [semantic(v) for v in value]
    return value


def spec_hash(spec: Frozen) -> str:
    data = semantic(spec.model_dump(mode="json"))
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()[:16]
