"""Pruning masks for post-hoc compression: magnitude, Wanda, N:M, and DSnoT's mask surgery.

A mask is a bool tensor shaped like the weight, True where the weight is pruned (set to
zero), as in the reference code (zyxxmu/DSnoT@4c029df lib/prune.py, which also holds the
Wanda and magnitude baselines it compares with). Weights are d_out x d_in; "per row" is
per output unit, and N:M groups run along the input dimension.

`InputStats` accumulates what Wanda and DSnoT read from the calibration activations of
one linear layer, one sequence at a time, as the reference's `WrappedGPT.add_batch` does
(it is called once per calibration sequence there):

- `scaler_row[j]`: the squared norm of input channel j over a sequence's tokens, averaged
  over sequences (Wanda's ||X_j||^2, up to the constant number of sequences);
- `sum_row[j]`: the sum of channel j over a sequence's tokens, averaged over sequences
  (DSnoT's x-bar: a per-sequence token sum, not a per-token mean; the stop threshold of
  0.1 is absolute, so the distinction matters);
- `var[j]`: the population variance of channel j within each sequence, averaged over
  sequences weighted by their token counts (the reference's running update; it is not
  the variance over all tokens pooled).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class InputStats:
    """Calibration statistics of one linear layer's input channels (see the module doc)."""

    def __init__(self, columns: int, device: torch.device | str = "cpu"):
        self.nsamples = 0
        self.ntokens = 0
        self.scaler_row = torch.zeros(columns, device=device)
        self.sum_row = torch.zeros(columns, device=device)
        self.var = torch.zeros(columns, device=device)

    @torch.no_grad()
    def add(self, x: torch.Tensor) -> None:
        """One sequence's inputs, tokens x channels (padding already removed)."""
        x = x.reshape(-1, x.shape[-1]).t().float()
        tokens = x.shape[1]
        if tokens == 0:
            return
        var = torch.var(x, dim=1, unbiased=False)
        if self.ntokens == 0:
            self.var = var
        else:
            self.var = (self.var * self.ntokens + var * tokens) / (self.ntokens + tokens)
        self.ntokens += tokens
        self.scaler_row *= self.nsamples / (self.nsamples + 1)
        self.sum_row *= self.nsamples / (self.nsamples + 1)
        self.nsamples += 1
        self.scaler_row += torch.norm(x, p=2, dim=1) ** 2 / self.nsamples
        self.sum_row += torch.sum(x, dim=1) / self.nsamples


def wanda_metric(weight: torch.Tensor, stats: InputStats) -> torch.Tensor:
    """|W_ij| sqrt(||X_j||^2): Wanda's importance of every weight."""
    return weight.abs().float() * torch.sqrt(stats.scaler_row.reshape(1, -1))


def row_mask(metric: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Prune the int(d_in x sparsity) lowest-metric weights of every row (stable order)."""
    order = torch.sort(metric, dim=-1, stable=True)[1]
    mask = torch.zeros_like(metric, dtype=torch.bool)
    mask.scatter_(1, order[:, : int(metric.shape[1] * sparsity)], True)
    return mask


def matrix_mask(metric: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The magnitude baseline of the reference: one threshold for the whole matrix,
    pruning every weight at or below the int(numel x sparsity)-th smallest metric."""
    threshold = torch.sort(metric.flatten())[0][int(metric.numel() * sparsity)]
    return metric <= threshold


def nm_groups(metric: torch.Tensor, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group of m consecutive input columns, the column indices of the m - n lowest
    metrics (pruned) and of the n others (kept), each group's sorted ascending."""
    if metric.shape[1] % m:
        raise ValueError(f"an {n}:{m} pattern needs d_in divisible by {m}, got {metric.shape[1]}")
    pruned, kept = [], []
    for start in range(0, metric.shape[1], m):
        order = torch.sort(metric[:, start : start + m].float(), dim=1)[1] + start
        pruned.append(order[:, : m - n])
        kept.append(order[:, m - n :])
    return torch.cat(pruned, dim=1), torch.cat(kept, dim=1)


def nm_mask(metric: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the n highest-metric weights of every m consecutive inputs (2:4: two of four).

    The reference takes `topk(..., m - n, largest=False)` per group; ties aside that is
    the same set as the lowest m - n of a sort."""
    if metric.shape[1] % m:
        raise ValueError(f"an {n}:{m} pattern needs d_in divisible by {m}, got {metric.shape[1]}")
    mask = torch.zeros_like(metric, dtype=torch.bool)
    for start in range(0, metric.shape[1], m):
        group = metric[:, start : start + m].float()
        low = torch.topk(group, m - n, dim=1, largest=False)[1]
        mask.scatter_(1, start + low, True)
    return mask


@dataclass(frozen=True)
class DSnoTOptions:
    """DSnoT's knobs, defaulting to the reference's command-line defaults (main.py)."""

    update_threshold: float = 0.1
    max_cycles: int = 50
    var_power: float = 1.0
    # `--without_same_sign` is `type=bool, default=True`: the same-sign condition is off
    # by default (and argparse cannot switch it on). The N:M branch always applies it.
    same_sign: bool = False


def sign_reorder(values: torch.Tensor) -> torch.Tensor:
    """Positions of each row: negative entries in their order, then positive ones in
    reverse order; entries exactly zero become position 0 (a quirk of the reference's
    `return_reorder_indice`, kept so masks match it)."""
    n = values.shape[1]
    pos = torch.arange(n, device=values.device).expand_as(values)
    key = torch.where(values < 0, pos, torch.where(values > 0, 3 * n - pos, n + pos))
    order = torch.sort(key, dim=1)[1]
    n_neg = (values < 0).sum(dim=1, keepdim=True)
    n_pos = (values > 0).sum(dim=1, keepdim=True)
    middle = (pos >= n_neg) & (pos < n - n_pos)
    return torch.where(middle, torch.zeros_like(order), order)


def _regrow_order(d: torch.Tensor, kept: torch.Tensor, stats: InputStats, power: float):
    """The summed shift of the pruned weights per row, its sign, and every column sorted
    by d / var^power with the kept columns at 0 (the regrowth candidates' order)."""
    metric = d.clone()
    metric.scatter_(1, kept, 0)
    error = torch.sum(metric, dim=1, keepdim=True)
    sign0 = torch.sign(error)
    if power:
        metric /= torch.pow(stats.var.reshape(1, -1), power)
    return error, sign0, torch.sort(metric, dim=1, stable=True)[1]


def _ends(rows: int, last: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Two pointers per row (start, end) and their steps (+1, -1)."""
    pointers = torch.zeros((rows, 2), dtype=torch.long, device=device)
    pointers[:, 1] = last
    steps = torch.ones((rows, 2), dtype=torch.long, device=device)
    steps[:, 1] = -1
    return pointers, steps


def _take(order: torch.Tensor, pointers, steps, side: torch.Tensor) -> torch.Tensor:
    """The entry each row's pointer on `side` names, moving that pointer on. A pointer
    past the end stays at it (the reference then indexes out of range and crashes; on
    every input where it does not, this clamp never acts)."""
    at = torch.gather(pointers, 1, side)
    chosen = torch.gather(order, 1, at.clamp(0, order.shape[1] - 1))
    pointers.scatter_(1, side, at + steps.gather(1, side))
    return chosen


def dsnot_unstructured(
    weight: torch.Tensor, stats: InputStats, sparsity: float, opts: DSnoTOptions,
    initial: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """DSnoT on an unstructured per-row mask: start from the `initial` metric's mask
    (Wanda's by default), then per row swap one pruned weight back in and one kept weight
    out per cycle while that moves the row's expected output shift toward zero."""
    w = weight.float()
    d = w * stats.sum_row.reshape(1, -1)
    initial = wanda_metric(w, stats) if initial is None else initial
    k = int(w.shape[1] * sparsity)
    order = torch.sort(initial, dim=-1, stable=True)[1]
    pruned, kept = order[:, :k], order[:, k:]
    mask = torch.zeros_like(w, dtype=torch.bool)
    mask.scatter_(1, pruned, True)
    error, sign0, regrow_order = _regrow_order(d, kept, stats, opts.var_power)
    wanda = wanda_metric(w, stats)
    wanda.scatter_(1, pruned, float("inf"))
    kept_by_wanda = torch.sort(wanda, dim=1, stable=True)[1][:, : w.shape[1] - k]
    prune_order = torch.gather(kept_by_wanda, 1, sign_reorder(torch.gather(d, 1, kept_by_wanda)))
    regrow_ptr, steps = _ends(w.shape[0], regrow_order.shape[1] - 1, w.device)
    prune_ptr, _ = _ends(w.shape[0], prune_order.shape[1] - 1, w.device)
    active = torch.ones_like(error, dtype=torch.bool)
    cycle = 0
    while not (torch.all(~active) or cycle >= opts.max_cycles):
        cycle += 1
        regrow = _take(regrow_order, regrow_ptr, steps, (error > 0).long())
        prune = _take(prune_order, prune_ptr, steps, (error < 0).long())
        d_regrow, d_prune = d.gather(1, regrow), d.gather(1, prune)
        active = active & (error.abs() > opts.update_threshold)
        if opts.same_sign:
            active = active & (sign0 == torch.sign(error + d_prune - d_regrow))
        mask.scatter_(1, prune, active)
        mask.scatter_(1, regrow, ~active)
        error += torch.where(active, d_prune, torch.zeros_like(d_prune))
        error -= torch.where(active, d_regrow, torch.zeros_like(d_regrow))
    return mask


def dsnot_nm(
    weight: torch.Tensor, stats: InputStats, n: int, m: int, opts: DSnoTOptions,
    initial: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """DSnoT under an N:M pattern: the weight pruned in exchange for a regrown one is the
    kept weight of lowest initial metric in the regrown weight's own group of m, so the
    pattern holds. As in the reference, this branch always requires the shift's sign to
    stay that of the initial shift."""
    w = weight.float()
    d = w * stats.sum_row.reshape(1, -1)
    initial = (wanda_metric(w, stats) if initial is None else initial).clone()
    pruned, kept = nm_groups(initial, n, m)
    mask = torch.zeros_like(w, dtype=torch.bool)
    mask.scatter_(1, pruned, True)
    error, sign0, regrow_order = _regrow_order(d, kept, stats, opts.var_power)
    regrow_ptr, steps = _ends(w.shape[0], regrow_order.shape[1] - 1, w.device)
    initial.scatter_(1, pruned, float("inf"))
    used = torch.max(initial, dim=1, keepdim=True)[0] + 1  # inf: pruned entries are inf
    offsets = torch.arange(m, device=w.device).reshape(1, -1)
    active = torch.ones_like(error, dtype=torch.bool)
    cycle = 1
    while not (torch.all(~active) or cycle > opts.max_cycles):
        cycle += 1
        side = (error > 0).long()
        at = torch.gather(regrow_ptr, 1, side)
        regrow = torch.gather(regrow_order, 1, at.clamp(0, regrow_order.shape[1] - 1))
        start = regrow - regrow % m
        block = torch.gather(initial, 1, offsets + start)
        prune = torch.topk(block, 1, dim=1, largest=False)[1] + start
        d_regrow, d_prune = d.gather(1, regrow), d.gather(1, prune)
        after = error + d_prune - d_regrow
        active = active & (sign0 == torch.sign(after)) & (error.abs() > opts.update_threshold)
        initial.scatter_(1, prune, used)
        mask.scatter_(1, prune, active)
        mask.scatter_(1, regrow, ~active)
        error += torch.where(active, d_prune, torch.zeros_like(d_prune))
        error -= torch.where(active, d_regrow, torch.zeros_like(d_regrow))
        regrow_ptr.scatter_(1, side, at + steps.gather(1, side))
    return mask


def parse_pattern(pattern: str | None) -> tuple[int, int] | None:
    """'2:4' -> (2, 4): keep n of every m; None for unstructured."""
    if pattern is None:
        return None
    n, _, m = pattern.partition(":")
    if not (n.isdigit() and m.isdigit()) or not 0 < int(n) < int(m):
        raise ValueError(f"pattern must look like 'n:m' with 0 < n < m, got {pattern!r}")
    return int(n), int(m)


@dataclass(frozen=True)
class PruneRule:
    """How one method picks a matrix's mask: its score, its sparsity or N:M pattern.

    `magnitude` scores |W| per row (the test asks for exactly half of each row at 50%) or,
    with scope `matrix`, with the reference baseline's one threshold per matrix; `wanda`
    scores |W| sqrt(||X_j||^2) per row; `dsnot` starts from Wanda's mask and runs DSnoT's
    surgery, except on `skip`ped sublayers (the reference's --skip_layer mlp default),
    which keep Wanda's mask."""

    method: str
    sparsity: float = 0.5
    pattern: tuple[int, int] | None = None
    scope: str = "row"
    dsnot: DSnoTOptions = DSnoTOptions()

    @property
    def needs_stats(self) -> bool:
        return self.method != "magnitude"

    def mask(self, weight: torch.Tensor, stats: InputStats | None, skip: bool = False):
        if self.method == "magnitude":
            metric = weight.abs().float()
        else:
            assert stats is not None, f"{self.method} needs calibration statistics"
            metric = wanda_metric(weight, stats)
        if self.method == "dsnot" and not skip:
            if self.pattern is not None:
                return dsnot_nm(weight, stats, *self.pattern, self.dsnot, initial=metric)
            return dsnot_unstructured(weight, stats, self.sparsity, self.dsnot, initial=metric)
        if self.pattern is not None:
            return nm_mask(metric, *self.pattern)
        if self.scope == "matrix":
            return matrix_mask(metric, self.sparsity)
        return row_mask(metric, self.sparsity)
