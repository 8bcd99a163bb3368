"""A small results database built by the store's own code, for tests, demos and benchmarks.

Every row goes through `Store.write` with real `Cell`s expanded from a matrix, so the
fixture exercises the same columns, metrics and baselines a real run writes. It covers
what the pages must handle: multi-seed and single-seed methods, failed cells, a rank
sweep, a learning-rate sweep, two tasks and two hardware profiles. Post-hoc rows go
through `Store.write_posthoc` with real post-hoc cells expanded from a `posthoc:`
section: merges of the two LoRA adapters (one refused for a missing input), and
compressions of the full fine-tune at three sparsities and 2:4.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from suite.cells import Cell, expand
from suite.posthoc.cells import PosthocCell, stage_cells
from suite.registry import Catalog
from suite.results import (
    CellReport,
    CellResult,
    PosthocMeasured,
    PosthocMeasurements,
    PosthocScore,
    SplitPredictions,
    phase_column,
)
from suite.specs.matrix import MatrixSpec, MethodEntry
from suite.specs.profile import ExpectedDevice, HardwareProfile, Resources
from suite.store.store import Store

# (label, method, params, lr, seeds); lora-r8 is the default LoRA.
_ENTRIES: list[tuple[str, str, dict, float | None, list[int]]] = [
    ("head", "head", {}, None, [0, 1, 2]),
    ("bitfit", "bitfit", {}, None, [0, 1, 2]),
    ("full", "full", {}, None, [0]),
    ("lora-r4", "lora", {"r": 4}, None, [0, 1, 2]),
    ("lora", "lora", {}, None, [0, 1, 2]),
    ("lora-r16", "lora", {"r": 16}, None, [0, 1, 2]),
    ("lora-lr1e-4", "lora", {}, 1e-4, [0, 1]),
    ("lora-lr1e-3", "lora", {}, 1e-3, [0, 1]),
]
# Base quality per label on drug-condition (accuracy); drug-sentiment sits near its baseline.
_QUALITY = {
    "head": 0.62,
    "bitfit": 0.70,
    "full": 0.84,
    "lora-r4": 0.74,
    "lora": 0.77,
    "lora-r16": 0.78,
    "lora-lr1e-4": 0.55,
    "lora-lr1e-3": 0.72,
}
_TRAINABLE = {"head": 3_850, "bitfit": 30_000, "full": 22_700_000, "lora-r4": 40_000}
GPU_PROFILE = HardwareProfile(
    name="gpu-a100",
    description="One A100 (demo profile for tests)",
    resources=Resources(num_cpus=4, num_gpus=1),
    expected=ExpectedDevice(type="cuda", name="A100"),
)
FAILED = {("bitfit", "drug-sentiment", 2), ("lora-r16", "drug-condition", 2)}
# What the workers recorded (the scheduler's `hardware_profiles` rows), one per profile.
RECORDED = {
    "cpu-local": {
        "profile_id": "demo-cpu-2core",
        "hostname": "laptop",
        "device_type": "cpu",
        "device_name": "AMD EPYC 7B13 (demo)",
        "cpu_model": "AMD EPYC 7B13 (demo)",
        "cpu_cores": 2,
        "ram_bytes": 24 * 2**30,
        "matmul_flops": 5.0e10,
    },
    "gpu-a100": {
        "profile_id": "demo-a100-40gb",
        "hostname": "gpu-node",
        "device_type": "cuda",
        "device_name": "NVIDIA A100-SXM4-40GB",
        "device_count": 1,
        "device_memory_bytes": 40 * 2**30,
        "cuda_version": "12.4",
        "cpu_model": "AMD EPYC 7742 (demo)",
        "cpu_cores": 16,
        "ram_bytes": 128 * 2**30,
        "matmul_flops": 1.5e14,
    },
}


def _noise(*key: object) -> float:
    """A deterministic value in [-1, 1) from a key, so the fixture is reproducible."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**31 - 1.0


def demo_cells(catalog: Catalog | None = None) -> list[Cell]:
    """The fixture's cells: two tasks, eight method entries, seeds per entry, two profiles."""
    catalog = catalog or Catalog.discover()
    cells: list[Cell] = []
    for label, method, params, lr, seeds in _ENTRIES:
        matrix = MatrixSpec(
            name="demo",
            models=["minilm-l6"],
            methods=[MethodEntry(method=method, label=label, params=params, lr=lr)],
            tasks=["drug-condition", "drug-sentiment"],
            seeds=seeds,
            budget={"max_steps": 200, "batch_size": 16},
        )
        cells.extend(expand(matrix, catalog))
    # The best three methods also ran on a second profile, one seed each.
    for cell in list(cells):
        if cell.method.label in ("lora", "full", "head") and cell.seed == 0:
            cells.append(cell.model_copy(update={"profile": GPU_PROFILE}))
    return cells


def demo_result(cell: Cell) -> CellResult:
    """A plausible result for a demo cell: quality, costs and a loss curve."""
    label, task, seed = cell.method.label, cell.task.name, cell.seed
    gpu = cell.profile.name == GPU_PROFILE.name
    if (label, task, seed) in FAILED:
        return CellResult(cell_id=cell.cell_id, status="failed", error="RuntimeError: demo failure")
    recorded = _recorded(cell.profile.name)
    base = {"drug-condition": 0.402, "drug-sentiment": 0.654}[task]
    quality = _QUALITY[label] if task == "drug-condition" else base + (_QUALITY[label] - 0.6) / 4
    acc = quality + 0.015 * _noise(label, task, seed, gpu)
    r = int(cell.method.params.get("r", 8))
    trainable = _TRAINABLE.get(label, 3_850 + 12 * 384 * 2 * r)
    latency = (0.004 if gpu else 0.040) * (1.0 + 0.1 * (cell.method.kind == "lora"))
    return CellResult(
        cell_id=cell.cell_id,
        status="ok",
        val_metrics={"accuracy": acc + 0.01, "macro_f1": acc - 0.2},
        test_metrics={"accuracy": acc, "macro_f1": acc - 0.22},
        baseline_val={"accuracy": base, "macro_f1": base / 8},
        baseline_test={"accuracy": base, "macro_f1": base / 8},
        trainable_params=trainable,
        adapter_params=trainable,
        total_params=22_713_216 + 3_850,
        peak_memory_bytes=int((600 + trainable / 2e4) * 2**20),
        peak_memory_isolated=True,
        train_wall_s=(8.0 if gpu else 60.0) * (1 + trainable / 3e7),
        train_steps=200,
        latency_unmerged_s=latency,
        latency_merged_s=latency / 1.1 if cell.method.kind == "lora" else None,
        merge_time_s=0.01 if cell.method.kind == "lora" else None,
        adapter_bytes=4 * trainable,
        **_memory(trainable, int((600 + trainable / 2e4) * 2**20)),
        final_train_loss=1.0 - acc / 2,
        loss_curve=[2.3 * (0.98**i) + 0.1 * abs(_noise(label, i)) for i in range(0, 200, 10)],
        predictions={"test": demo_predictions(task, label, seed, acc)},
        device="cuda" if gpu else "cpu",
        hostname="gpu-node" if gpu else "laptop",
        **recorded,
        **_phases((8.0 if gpu else 60.0) * (1 + trainable / 3e7), seed),
    )


def _phases(train_s: float, seed: int) -> dict[str, float | bool]:
    """A plausible split of a cell's time: the worker's first cell (seed 0) loads."""
    first = seed == 0
    seconds = {
        "dispatch": 0.05, "worker": 2.0 if first else 0.01, "data_load": 4.0 if first else 0.3,
        "model_load": 3.0 if first else 0.4, "prepare": 0.1, "train": train_s,
        "evaluate": train_s / 6, "measure": train_s / 10, "save": 0.0, "other": 0.02,
        "result_to_row": 0.15,
    }  # fmt: skip
    return {
        **{phase_column(p): s for p, s in seconds.items()},
        "model_cached": not first,
        "data_cached": not first,
        "cell_total_s": sum(seconds.values()),
    }


def _memory(trainable: int, peak: int) -> dict[str, int | str]:
    """A bf16 base, fp32 trainable tensors with AdamW: the breakdown inside the peak."""
    parts = {
        "mem_frozen_weights_bytes": 2 * (22_713_216 + 3_850 - trainable),
        "mem_trainable_weights_bytes": 4 * trainable,
        "mem_gradients_bytes": 4 * trainable,
        "optimizer_state_bytes": 8 * trainable,
    }
    rest = peak - sum(parts.values())
    base = parts["mem_frozen_weights_bytes"]
    return {**parts, "mem_activations_other_bytes": rest, "base_storage": "bf16",
            "base_bytes": base, "inference_base_bytes": base}  # fmt: skip


# Test examples per task in the demo (drug-condition really has 189).
_N_TEST = {"drug-condition": 189, "drug-sentiment": 200}
# Classes per task (drug-condition keeps its 10 most frequent conditions; drug-sentiment:
# negative, neutral, positive): stored ids stay in range, so pages can name them.
_N_CLASSES = {"drug-condition": 10, "drug-sentiment": 3}


def demo_predictions(task: str, label: str, seed: int, accuracy: float) -> SplitPredictions:
    """Per-example test predictions with the given accuracy: the same gold labels for
    every cell of a task; which examples a method gets right depends on the method (its
    easy examples overlap with other methods') and a little on the seed."""
    import numpy as np

    n = _N_TEST[task]
    k = _N_CLASSES[task]
    gold = np.random.default_rng(_seed(task)).integers(0, k, n)
    difficulty = np.random.default_rng(_seed(task, "difficulty")).random(n)
    jitter = np.random.default_rng(_seed(task, label, seed)).random(n) * 0.3
    order = np.argsort(difficulty + jitter)
    correct = np.zeros(n, dtype=bool)
    correct[order[: int(round(accuracy * n))]] = True
    pred = np.where(correct, gold, (gold + 1 + seed % (k - 1)) % k)  # another class
    margin = np.random.default_rng(_seed(task, label, seed, "margin")).random(n)
    return SplitPredictions(
        pred=pred.astype(float).tolist(), gold=gold.astype(float).tolist(), score=margin.tolist()
    )


def _seed(*key: object) -> int:
    return int(hashlib.sha256(repr(key).encode()).hexdigest()[:8], 16)


def _recorded(profile: str) -> dict:
    """The recorded-hardware fields, where this version of CellResult has them."""
    if "hardware_profile_id" not in CellResult.model_fields:
        return {}
    row = RECORDED[profile]
    return {"hardware_profile_id": row["profile_id"], "hardware_profile": row}


def build_demo_db(path: Path | str, catalog: Catalog | None = None) -> Path:
    """Write the fixture's results into a fresh database at `path` through the store."""
    store = Store(path)
    store.init()
    provenance = {"versions": {"torch": "demo"}, "git_sha": "demo", "git_dirty": False}
    for cell in demo_cells(catalog):
        gpu = cell.profile.name == GPU_PROFILE.name
        hardware = {"device": "cuda", "gpu": "A100"} if gpu else {"device": "cpu", "cpus": 2}
        store.write(cell, demo_result(cell), {**provenance, "hardware": hardware, "run_id": "demo"})
    for cell in demo_posthoc_cells(catalog):
        store.write_posthoc(cell, demo_posthoc_report(cell), {**provenance, "run_id": "demo"})
    return store.path


_MERGES = ["linear", "task-arithmetic", "ties", "lora-lego", "rmm"]
# (label, method, params): compressions of the full fine-tune on drug-condition.
_COMPRESSIONS = [
    *[(f"magnitude-{int(s * 100)}", "magnitude", {"sparsity": s}) for s in (0.3, 0.5, 0.7)],
    *[(f"wanda-{int(s * 100)}", "wanda", {"sparsity": s}) for s in (0.3, 0.5, 0.7)],
    ("magnitude-2of4", "magnitude", {"pattern": "2:4"}),
    ("wanda-2of4", "wanda", {"pattern": "2:4"}),
    ("dsnot-50", "dsnot", {}),
    ("welore-50", "welore", {}),
    ("sms-50", "sparse-model-soups", {}),
]
# Normalised accuracy (merged / own adapter) per merge method on each task.
_MERGE_QUALITY = {"linear": 0.86, "task-arithmetic": 0.93, "ties": 0.95, "lora-lego": 0.9,
                  "rmm": 0.99}  # fmt: skip
MISSING_INPUT = ("merge-lora", "rmm", 2)  # (stage, method, seed): refused, input missing


def demo_posthoc_cells(catalog: Catalog | None = None) -> list[PosthocCell]:
    """Merges of the two LoRA adapters per seed and compressions of the full fine-tune."""
    from suite.specs.posthoc import PosthocEntry, PosthocStageSpec

    catalog = catalog or Catalog.discover()
    trained = [c for c in demo_cells(catalog) if c.profile.name != GPU_PROFILE.name]
    matrix = MatrixSpec(
        name="demo",
        models=["minilm-l6"],
        methods=[MethodEntry(method="lora"), MethodEntry(method="full")],
        tasks=["drug-condition", "drug-sentiment"],
        seeds=[0, 1, 2],
    )
    merge = PosthocStageSpec(
        name="merge-lora", stage="merge", inputs={"method": "lora"}, methods=_MERGES
    )
    compress = PosthocStageSpec(
        name="compress-full", stage="compress",
        inputs={"method": "full", "tasks": ["drug-condition"]},
        methods=[PosthocEntry(method=m, label=label, params=p) for label, m, p in _COMPRESSIONS],
    )  # fmt: skip
    return [
        *stage_cells(matrix, merge, 0, catalog, trained),
        *stage_cells(matrix, compress, 1, catalog, trained),
    ]


def demo_posthoc_report(cell: PosthocCell) -> CellReport:
    """A plausible post-hoc outcome: merged or compressed scores beside the source's."""
    if (cell.stage_name, cell.method.name, cell.seed) == MISSING_INPUT:
        measured = PosthocMeasured(
            status="input_missing",
            error="input lora@drug-sentiment saved no artifact; refused (post-hoc stages "
            "never retrain their inputs)",
        )
        return CellReport(measured=measured)
    own = {c.task.name: demo_result(c).test_metrics["accuracy"] for c in cell.inputs}
    if cell.method.stage == "merge":
        measurements = _demo_merge(cell, own)
    else:
        measurements = _demo_compression(cell, own["drug-condition"])
    return CellReport(
        measured=PosthocMeasured(status="ok", cell_wall_s=30.0, measurements=measurements)
    )


def _demo_merge(cell: PosthocCell, own: dict[str, float]) -> PosthocMeasurements:
    name = cell.method.name
    scores = []
    for task, value in own.items():
        ratio = _MERGE_QUALITY[name] + 0.02 * _noise(name, task, cell.seed)
        scores.append(
            PosthocScore(task=task, split="test", metric="accuracy", value=value * ratio,
                         source_value=value, primary=True)
        )  # fmt: skip
    adapter = 4 * (12 * 384 * 2 * 8)
    stored = {"rmm": 2 * adapter, "lora-lego": adapter}.get(name, 4 * 22_713_216 // 20)
    return PosthocMeasurements(
        scores=scores, stage_time_s=0.05 if name != "lora-lego" else 1.2,
        stored_bytes=stored, stored_params=stored // 4, heads_bytes=2 * 4 * 3_850,
    )  # fmt: skip


def _demo_compression(cell: PosthocCell, dense: float) -> PosthocMeasurements:
    params = cell.method.params
    pattern = params.get("pattern")
    level = 0.5 if pattern or "reduction" in params else float(params["sparsity"])
    drop = (
        {"magnitude": 0.25, "wanda": 0.12, "dsnot": 0.1, "welore": 0.3}.get(cell.method.name, 0.05)
        * (level / 0.5) ** 2
        * (1.4 if pattern else 1.0)
    )
    total = 21_000_000
    return PosthocMeasurements(
        scores=[PosthocScore(task="drug-condition", split="test", metric="accuracy",
                             value=dense * (1 - drop), source_value=dense, primary=True)],
        stage_time_s=2.0, stored_bytes=int(4 * total * (1 - level) * 1.03),
        stored_params=total, heads_bytes=4 * 3_850, sparsity=level, level=level,
        level_label=pattern or f"{level:.0%}", pattern_ok=True if pattern else None,
        nonzero_params=int(total * (1 - level)), target_params=total, total_params=total,
        latency_s=0.041, source_latency_s=0.040,
        train_steps=60 if cell.method.trains else None,
        train_wall_s=45.0 if cell.method.trains else None,
    )  # fmt: skip


_BUILT: dict[str, Path] = {}


def demo_db_copy(dest: Path | str) -> Path:
    """A copy of the fixture database at `dest`; built once per process, then copied."""
    import shutil
    import tempfile

    if "db" not in _BUILT:
        folder = Path(tempfile.mkdtemp(prefix="peftbench-demo-"))
        _BUILT["db"] = build_demo_db(folder / "demo.duckdb")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_BUILT["db"], dest)
    return dest
