"""The task and model catalogue: hub tasks fail helpfully offline and load local files;
every preset's target-module map finds modules in a tiny model of its family."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from suite.methods.targets import find_targets
from suite.models.loading import conv1d_to_linear
from suite.tasks.data import load_task_data
from suite.tasks.loaders import TaskDataError
from tests.helpers import catalog

HUB_TASKS = [
    "glue-sst2", "glue-mrpc", "glue-cola", "glue-qnli", "glue-rte", "glue-stsb", "glue-mnli",
    "glue-qqp", "boolq", "piqa", "arc-easy", "arc-challenge", "hellaswag", "winogrande",
    "gsm8k", "vtab-cifar100", "vtab-dtd", "vtab-flowers102", "vtab-pets", "vtab-svhn",
]  # fmt: skip


def test_the_catalogue_has_every_hub_task_and_preset():
    cat = catalog()
    assert set(HUB_TASKS) <= set(cat.tasks.names())
    presets = {"roberta-base", "roberta-large", "deberta-v3-base", "gpt2-medium",
               "llama-3.2-1b", "llama-3.2-3b", "qwen2.5-0.5b", "qwen2.5-1.5b",
               "vit-base-patch16-224", "minilm-l6", "tiny-llama", "tiny-vit"}  # fmt: skip
    assert presets <= set(cat.models.names())


def test_hub_task_offline_error_says_how_to_use_local_files(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    entry = catalog().tasks.get("glue-rte")
    with pytest.raises(TaskDataError) as err:
        load_task_data(entry.spec, entry.folder)
    assert "nyu-mll/glue" in str(err.value) and "data_files" in str(err.value)


def test_hub_task_reads_local_files_through_a_data_files_override(tmp_path):
    """glue-mrpc pointed at local Parquet files (GLUE's layout, hidden test labels -1)."""
    rows = [{"sentence1": f"a {i}", "sentence2": f"b {i}", "label": i % 2} for i in range(40)]
    pd.DataFrame(rows).to_parquet(tmp_path / "train.parquet")
    pd.DataFrame(rows[:10]).to_parquet(tmp_path / "validation.parquet")
    pd.DataFrame([{**r, "label": -1} for r in rows[:5]]).to_parquet(tmp_path / "test.parquet")
    spec = catalog().tasks.get("glue-mrpc").spec
    files = {s: str(tmp_path / f"{s}.parquet") for s in ("train", "validation", "test")}
    data_spec = spec.data.model_copy(update={"data_files": files})
    data = load_task_data(spec.model_copy(update={"data": data_spec}), tmp_path)
    # GLUE's validation became test; hidden-label test dropped; validation carved from train.
    assert len(data.splits["test"]) == 10
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 40
    assert data.labels == ["0", "1"]


TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)


def _tiny_model(family: str):
    import transformers as tf

    builders = {
        "bert": lambda: tf.BertModel(tf.BertConfig(**TINY, vocab_size=50)),
        "roberta": lambda: tf.RobertaModel(tf.RobertaConfig(**TINY, vocab_size=50)),
        "deberta-v2": lambda: tf.DebertaV2Model(tf.DebertaV2Config(**TINY, vocab_size=50)),
        "gpt2": lambda: tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=32, n_layer=1, n_head=4)),
        "llama": lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**TINY, vocab_size=50)),
        "qwen2": lambda: tf.Qwen2ForCausalLM(tf.Qwen2Config(**TINY, vocab_size=50)),
        "mistral": lambda: tf.MistralForCausalLM(tf.MistralConfig(**TINY, vocab_size=50)),
        "vit": lambda: tf.ViTModel(tf.ViTConfig(**TINY, image_size=8, patch_size=4)),
    }
    return builders[family]()


@pytest.mark.parametrize("name", sorted(n for n in catalog().models.names()))
def test_every_preset_target_family_matches_its_architecture(name):
    from suite.methods.fused import split_fused

    preset = catalog().models.get(name).spec
    for family in preset.target_modules:
        model = _tiny_model(preset.family)
        conv1d_to_linear(model)
        split_fused(model, preset, preset.resolve_targets(family))  # slices become linears
        found = find_targets(model, preset.resolve_targets(family))
        assert found, family
        assert all("lm_head" not in n and "pooler" not in n for n, _ in found)


def test_gpt2_conv1d_becomes_an_equivalent_linear():
    model = _tiny_model("gpt2").eval()
    ids = torch.randint(0, 100, (2, 6))
    before = model(input_ids=ids).logits
    assert conv1d_to_linear(model) == 4
    assert torch.allclose(model(input_ids=ids).logits, before, atol=1e-5)
    assert not any(type(m).__name__ == "Conv1D" for m in model.modules())
