"""Image data that ships offline: scikit-learn's handwritten digits (8x8, 10 classes).

`load_digits` splits the 1,797 images once with a fixed seed into the VTAB-1k form
PEFT papers use (800 train, 200 validation) and a test split of the remaining 797.
Pixels are scaled to [0, 1] (the originals are 0-16 counts).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from suite.specs.task import DataSpec


def load_digits(data: DataSpec, task_dir: Path) -> dict[str, pd.DataFrame]:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    order = np.random.default_rng(int(data.options.get("seed", 0))).permutation(len(bunch.target))
    n_train = int(data.options.get("n_train", 800))
    n_val = int(data.options.get("n_validation", 200))
    frame = pd.DataFrame(
        {"image": [img / 16.0 for img in bunch.images], "label": bunch.target.astype(str)}
    )
    cuts = {
        "train": order[:n_train],
        "validation": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    return {name: frame.iloc[idx].reset_index(drop=True) for name, idx in cuts.items()}
