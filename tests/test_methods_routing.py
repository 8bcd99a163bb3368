"""MoLE-style top-1 mixture and SMoRA beyond conformance (docs/methods-adaptive-mixture.md):
methods that route inputs to parts of the adapter. Gates, the gated sum of experts, the
default layout and its balance loss, top-k rank activation and bias rebalancing."""

from __future__ import annotations

import pytest
import torch

from suite import conformance as C
from tests.helpers import tiny_bench
from tests.support.methods import method_with


def first_gated(prepared):
    from suite.methods.gated_lora import GatedLoRALinear

    return next(m for m in prepared.model.modules() if isinstance(m, GatedLoRALinear))


def first_experts(prepared):
    from suite.plugins import load_object

    cls = load_object("impl.py:ExpertsLinear", "methods/mole")
    return next(m for m in prepared.model.modules() if isinstance(m, cls))


@pytest.mark.parametrize("routing", ["dense", "top1"])
def test_mole_gates_are_the_blocks_router_probabilities_or_its_argmax(routing):
    method = method_with("mole", experts=4, routing=routing)
    module = first_experts(C.prepare(method, tiny_bench()))
    router, d_in = module.block_router, module.in_features
    with torch.no_grad():
        router.weight.zero_()
        router.bias.zero_()
        for e in range(4):
            router.weight[e, e] = 5.0  # expert e answers coordinate e
    x = torch.zeros(4, d_in)
    x[torch.arange(4), torch.tensor([2, 0, 3, 1])] = 1.0
    router.route(x)
    gates = module.gates(router.probs)
    assert gates.argmax(-1).tolist() == [2, 0, 3, 1]
    if routing == "top1":  # the released sparse path: the argmax expert, unweighted
        assert torch.equal(gates, torch.eye(4)[[2, 0, 3, 1]])
    else:  # the released dense_moe: every expert weighted by its probability
        assert torch.allclose(gates, torch.softmax(5 * x[:, :4], -1))


def test_mole_output_is_the_gated_sum_of_its_experts_loras():
    module = first_experts(C.prepare(method_with("mole", experts=3, r=2), tiny_bench()))
    torch.manual_seed(0)
    with torch.no_grad():
        module.lora_B.weight.normal_()
    x = torch.randn(5, module.in_features)
    module.block_router.route(x)
    gates = module.gates(module.block_router.probs)
    expected = torch.zeros(5, module.out_features)
    for e in range(3):
        a, b = module.lora_A.weight[2 * e : 2 * e + 2], module.lora_B.weight[:, 2 * e : 2 * e + 2]
        expected += gates[:, e : e + 1] * (x @ a.T @ b.T) * module.scaling
    assert torch.allclose(module.update(x), expected, atol=1e-5)


def test_mole_puts_experts_on_the_mlp_and_plain_lora_on_attention():
    from suite.plugins import load_object

    experts_cls = load_object("impl.py:ExpertsLinear", "methods/mole")
    bench = tiny_bench()
    # The defaults (the conformance block drops the plain LoRAs): experts on `mlp`,
    # plain LoRA on `attention`; on BERT each MLP projection is its own block (router).
    method = method_with("mole", lora_targets="attention")
    prepared = C.prepare(method, bench)
    p = method.params
    model = bench.build(0)
    mlp = C.target_shapes(model, bench, "mlp")
    attention = C.target_shapes(model, bench, "attention")
    expected = sum(p.experts * (p.r * (i + o) + i + 1) for o, i in mlp)
    expected += sum(p.r * (i + o) for o, i in attention)
    assert C.adapter_param_count(prepared) == expected
    experts = [n for n, m in prepared.model.named_modules() if isinstance(m, experts_cls)]
    assert len(experts) == len(mlp) and all("dense" in n and "attention" not in n for n in experts)
    # The balance loss after a training forward: sum_e mean(p_e) mean(onehot_e) in (0, 1].
    prepared.model.train()
    C.loss_fn(prepared.model, bench.batches[0])
    loss = prepared.hooks.extra_loss()
    assert loss is not None and loss.requires_grad
    assert 0 < float(loss.detach()) <= p.aux_loss_weight * (1 + 1e-6)
    assert prepared.hooks.extra_loss() is None  # consumed: one loss per forward


def test_smora_activates_the_top_k_ranks_and_bias_rebalances():
    rate = 0.5
    method = method_with("smora", r=8, top_k=3, bias_update_rate=rate)
    prepared = C.prepare(method, tiny_bench())
    module = first_gated(prepared)
    x = torch.randn(16, module.in_features, generator=torch.Generator().manual_seed(1))
    logits = module.router(x)
    top = torch.topk(logits, 3, dim=-1).indices.sort(-1).values
    gates = module.gates(x)
    active = torch.nonzero(gates).view(16, 3, 2)[..., 1]
    assert torch.equal(active, top)  # sigmoid is monotone and the bias starts at 0
    assert torch.allclose(gates.sum(-1), torch.full((16,), 3.0))  # renormalised to k
    assert module.scaling == method.params.alpha / 3  # alpha / k, not alpha / r
    # Every training forward moves the bias: overloaded ranks down, idle ranks up.
    module.eval()
    module(x)
    assert torch.equal(module.route_bias, torch.zeros(8))  # no update outside training
    module.train()
    module(x)
    load = torch.bincount(top.reshape(-1), minlength=8).float()
    assert torch.equal(module.route_bias.detach(), rate * torch.sign(load.mean() - load))
