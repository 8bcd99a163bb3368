"""ICM-LoRA's CVAE against the authors' model/CVAE_design.py
(tests/golden/icm-lora/generate.py), a deliberately broken copy failing it, and the data
layout (standardise, flatten, split back) by formula."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from tests.support.golden import assert_close, load_fixture

CVAE_FILE = Path(__file__).resolve().parent.parent / "posthoc" / "icm-lora" / "cvae.py"


def _module(path: Path, name: str = "icm_lora_cvae"):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compare(prefix: str, tensors: dict, fx) -> None:
    for name, t in tensors.items():
        t = t.detach().double()
        assert_close(t.sum().reshape(1), fx[f"{prefix}.sum.{name}"], f"{prefix} sum {name}")
        assert_close(t.norm().reshape(1), fx[f"{prefix}.norm.{name}"], f"{prefix} norm {name}")
        if f"{prefix}.whole.{name}" in fx.tensors:
            assert_close(t.float(), fx[f"{prefix}.whole.{name}"], f"{prefix} {name}")


def _check(cvae) -> None:
    """Rebuild the fixture's setting with `cvae` (a module like cvae.py) and compare."""
    fx = load_fixture("icm-lora")
    c = fx.config
    threads = torch.get_num_threads()
    torch.set_num_threads(c["threads"])
    try:
        torch.manual_seed(c["seed"])
        model = cvae.CVAE(c["latent"], c["condition"], c["length"], c["kernel"],
                          c["slice_length"], c["kld_weight"])  # fmt: skip
        _compare("init", dict(model.state_dict()), fx)
        model.train()
        torch.manual_seed(c["forward_seed"])
        mu, log_var = model.encode(fx["x"], fx["c"])
        assert_close(mu, fx["mu"], "mu")
        assert_close(log_var, fx["log_var"], "log-variance")
        torch.manual_seed(c["forward_seed"])
        loss, recons, kld = model(fx["x"], fx["c"])
        for got, key in ((loss, "loss"), (recons, "recons"), (kld, "kld")):
            assert_close(got.detach().reshape(1), fx[key], key)
        loss.backward()
        _compare("grad", {k: p.grad for k, p in model.named_parameters()}, fx)
        model.eval()
        with torch.no_grad():
            assert_close(model.decode(fx["z_eval"], fx["c_eval"]), fx["decoded_eval"], "decoded")
    finally:
        torch.set_num_threads(threads)


def test_golden_icm_lora_cvae_init_forward_loss_gradients_and_decoding():
    _check(_module(CVAE_FILE))


def test_golden_icm_lora_fails_on_a_broken_copy(tmp_path):
    # sigma = exp(log_var) instead of exp(log_var / 2); a LeakyReLU -> ReLU break fails too.
    old, new = "torch.exp(0.5 * log_var)", "torch.exp(log_var)"
    text = CVAE_FILE.read_text()
    assert old in text
    broken = tmp_path / "cvae_broken.py"
    broken.write_text(text.replace(old, new, 1))
    with pytest.raises(AssertionError):
        _check(_module(broken, "icm_lora_cvae_broken"))


def test_flatten_standardises_each_tensor_and_unflatten_restores_it():
    cvae = _module(CVAE_FILE)
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(3, 5, generator=gen) * 2 + 1, torch.randn(4, generator=gen) * 0.1]
    vector, stats = cvae.flatten(tensors)
    assert vector.shape == (19,)
    assert torch.allclose(
        vector[:15], ((tensors[0] - tensors[0].mean()) / tensors[0].std()).reshape(-1)
    )
    padded = torch.cat([vector, torch.zeros(5)])  # a decoder's padded output, cut back
    for got, want in zip(
        cvae.unflatten(padded, [t.shape for t in tensors], stats), tensors, strict=True
    ):
        assert torch.allclose(got, want, atol=1e-6)


def test_the_learning_rate_falls_from_lr_to_half_over_the_run():
    cvae = _module(CVAE_FILE)
    assert cvae.cosine_lr(2e-4, 0, 100) == pytest.approx(2e-4)
    assert cvae.cosine_lr(2e-4, 100, 100) == pytest.approx(1e-4)


def test_a_slice_length_the_encoder_cannot_halve_twelve_times_is_refused():
    cvae = _module(CVAE_FILE)
    with pytest.raises(ValueError, match="multiple of 4096"):
        cvae.CVAE(8, 4, 100, slice_length=1000)
