"""The tiny bench the conformance checks run on, and a runner that reports every check.

Lives in `suite` (not tests/) so `peftbench validate --conformance DIR` can check a user's
method folder exactly as `tests/test_conformance.py` checks the built-in ones: a 2-layer
BERT with random weights (built from a config, nothing downloaded) and random batches.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from suite import conformance as C
from suite.registry import Catalog
from suite.specs.model import ModelPreset

NUM_CLASSES = 3
IDENTITY_TOL = 1e-6


def tiny_bert_backbone(seed: int = 0, hidden: int = 32, layers: int = 2, vocab: int = 100):
    """A 2-layer BERT (hidden 32, 4 heads) with seeded random weights and no dropout."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertModel(config, add_pooling_layer=False).eval()


def random_batches(
    n_batches: int = 2, batch: int = 4, length: int = 12, vocab: int = 100, seed: int = 0
) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(1, vocab, (batch, length), generator=gen)
        mask = torch.ones(batch, length, dtype=torch.long)
        mask[0, length // 2 :] = 0  # one padded row, so pooling masks are exercised
        labels = torch.randint(0, NUM_CLASSES, (batch,), generator=gen)
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def bench_from_backbone(backbone, preset: ModelPreset, vocab: int) -> C.Bench:
    from suite.models.taskmodel import TaskModel

    def build(seed: int) -> TaskModel:
        model = TaskModel(copy.deepcopy(backbone), NUM_CLASSES, preset.pooling, seed)
        for p in model.backbone.parameters():
            p.requires_grad_(False)
        return model

    return C.Bench(preset=preset, build=build, batches=random_batches(vocab=vocab))


def write_tiny_bert_plugin(root, catalog: Catalog):
    """Save a 2-layer random BERT with MiniLM's tokenizer under `root` as a plugin model
    preset (`models/tiny-bert.yaml`), so end-to-end runs through the CLI take seconds.

    Returns `root`, ready for `--plugins`.
    """
    import textwrap
    from pathlib import Path

    from transformers import AutoTokenizer

    from suite.models.loading import resolve_source

    root = Path(root)
    weights = root / "tiny-bert-weights"
    minilm, _ = resolve_source(catalog.models.get("minilm-l6").spec)
    tokenizer = AutoTokenizer.from_pretrained(minilm, local_files_only=True)
    tiny_bert_backbone(vocab=tokenizer.vocab_size).save_pretrained(weights)
    tokenizer.save_pretrained(weights)
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "models" / "tiny-bert.yaml").write_text(
        textwrap.dedent(f"""\
        name: tiny-bert
        family: bert
        description: 2-layer BERT, hidden 32, random weights (tests and benchmarks only)
        source: {{path: {weights}}}
        pooling: mean
        target_modules:
          qv: [query, value]
          attention: [query, key, value, attention.output.dense]
        """)
    )
    return root


def tiny_preset(catalog: Catalog) -> ModelPreset:
    """minilm-l6's target-module map (BERT naming) under the name tiny-bert."""
    minilm = catalog.models.get("minilm-l6").spec
    return minilm.model_copy(update={"name": "tiny-bert"})


def tiny_bench(catalog: Catalog) -> C.Bench:
    return bench_from_backbone(tiny_bert_backbone(), tiny_preset(catalog), vocab=100)


@dataclass(frozen=True)
class CheckResult:
    method: str
    check: str
    status: str  # "pass" | "FAIL" | "skip"
    detail: str = ""


def _checks(method, conf, targets, bench: C.Bench) -> dict[str, Callable[[], tuple[str, str]]]:
    """Each check returns (status, detail); they mirror tests/test_conformance.py."""

    def count():
        if not conf.formula:
            return "skip", conf.note or "no per-target formula"
        got = C.adapter_param_count(C.prepare(method, bench))
        want = method.expected_trainable_params(C.target_shapes(bench.build(0), bench, targets))
        return ("pass" if got == want else "FAIL"), f"{got} trainable, formula {want}"

    def identity():
        if not conf.identity_at_init:
            return ("skip" if conf.note else "FAIL"), conf.note or "not claimed, and no note"
        drift = C.check_identity(method, bench)
        return ("pass" if drift < IDENTITY_TOL else "FAIL"), f"max drift {drift:.2e}"

    def merge():
        prepared = C.prepare(method, bench)
        if prepared.merge is None:
            return "skip", "not mergeable"
        diff = C.check_merge(prepared, bench)
        return ("pass" if diff < C.MERGE_TOL else "FAIL"), f"merged vs unmerged {diff:.2e}"

    def gradients():
        leaked, starved = C.gradient_leaks(C.prepare(method, bench), bench)
        bad = [f"frozen with grad: {sorted(leaked)[:3]}"] if leaked else []
        bad += [f"trainable without grad: {sorted(starved)[:3]}"] if starved else []
        return ("FAIL", "; ".join(bad)) if bad else ("pass", "")

    def reload():
        diff = C.check_reload(method, bench)
        return ("pass" if diff == 0.0 else "FAIL"), f"reloaded outputs differ by {diff:.2e}"

    def training():
        if not conf.loss_decreases:
            return "skip", conf.note
        torch.manual_seed(0)
        first, last = C.check_training(method, bench)
        return ("pass" if last < first else "FAIL"), f"loss {first:.4f} -> {last:.4f}"

    return {
        "param count": count,
        "identity at init": identity,
        "merge": merge,
        "gradients": gradients,
        "reload": reload,
        "training": training,
    }


def run_conformance(catalog: Catalog, names: list[str]) -> list[CheckResult]:
    """Every conformance check for each named method on the tiny BERT; errors are failures."""
    from suite.cells import resolve_method
    from suite.specs.matrix import MethodEntry

    results = []
    for name in names:
        conf = catalog.methods.get(name).spec.conformance
        resolved = resolve_method(catalog, MethodEntry(method=name))
        targets = {**resolved.params, **conf.params}.get("targets", "qv")
        bench = tiny_bench(catalog)
        try:
            method = C.instantiate(resolved, conf.params)
        except Exception as exc:  # noqa: BLE001 - report, don't crash the table
            results.append(CheckResult(name, "instantiate", "FAIL", str(exc)))
            continue
        for check, run in _checks(method, conf, targets, bench).items():
            try:
                status, detail = run()
            except Exception as exc:  # noqa: BLE001 - a crashing check is a failing check
                status, detail = "FAIL", f"{type(exc).__name__}: {exc}"
            results.append(CheckResult(name, check, status, detail))
    return results


def methods_under(folder, plugins) -> tuple[Catalog, list[str]]:
    """The catalogue with `folder` as a plugin folder, and the methods defined under it."""
    from pathlib import Path

    root = Path(folder).resolve()
    catalog = Catalog.discover([*plugins, root])
    names = [e.name for e in catalog.methods if root == e.path.parent or root in e.path.parents]
    return catalog, names


def conformance_command(folder, plugins, console) -> int:
    """`peftbench validate --conformance DIR`: print a pass/fail table; 1 if any check fails."""
    from rich.table import Table

    catalog, names = methods_under(folder, plugins)
    if not names:
        console.print(f"no method.yaml under {folder}")
        return 1
    results = run_conformance(catalog, names)
    table = Table(title=f"conformance on the tiny BERT ({len(names)} method(s))")
    for column in ("method", "check", "result", "detail"):
        table.add_column(column)
    style = {"pass": "green", "FAIL": "bold red", "skip": "yellow"}
    for r in results:
        table.add_row(r.method, r.check, f"[{style[r.status]}]{r.status}[/]", r.detail)
    console.print(table)
    failed = sorted({r.method for r in results if r.status == "FAIL"})
    console.print(f"failed: {', '.join(failed)}" if failed else "every check passed")
    return 1 if failed else 0
