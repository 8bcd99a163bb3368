"""ICM-LoRA's conditional VAE over flattened LoRA weights (YihuaJerry/ICM-LoRA@0b0057c,
model/CVAE_design.py CVAE; the data layout of utils/normalizeLoraWeight_small.py and
utils/ReconstructLora_cvae.py; the schedule of TrainScript_CVAE.py).

A LoRA is one vector: each tensor standardised on its own ((v - mean) / std, std
unbiased), flattened and concatenated, zero-padded to a multiple of `slice_length`.
Encoder: 12 Conv1d(kernel 7, stride 2) + BatchNorm + LeakyReLU blocks with channels
CHANNELS, a linear to `latent` features, then mu and log-variance from [that, c] (c the
task vector). Decoder: a linear from [z, c] back to (8, L / 4096), 11 transposed-conv +
BatchNorm + ELU blocks, a last transposed conv block and a Conv1d to one channel. Loss:
MSE(reconstruction, padded input) + kld_weight * KL(N(mu, sigma) || N(0, 1)) (summed
over latent features, averaged over the batch).

One deviation: the reference compares its (B, L) reconstruction with the (B, 1, L)
input, which broadcasts to every (reconstruction, input) pair when B > 1; here each
reconstruction is compared with its own input (the same number at B = 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# The reference's channel list (a palindrome: the decoder runs it reversed).
CHANNELS = (8, 16, 32, 64, 128, 256, 256, 128, 64, 32, 16, 8)


def _down(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, k, 2, k // 2), nn.BatchNorm1d(cout), nn.LeakyReLU())


def _up(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose1d(cin, cout, k, 2, k // 2, output_padding=1),
        nn.BatchNorm1d(cout),
        nn.ELU(),
    )


class CVAE(nn.Module):
    def __init__(self, latent: int, condition: int, length: int, kernel: int = 7,
                 slice_length: int = 4096, kld_weight: float = 0.005):  # fmt: skip
        super().__init__()
        steps = 2 ** len(CHANNELS)
        padded = math.ceil(length / slice_length) * slice_length
        if padded % steps:
            raise ValueError(f"slice_length must be a multiple of {steps}, got {slice_length}")
        self.length, self.padded, self.kld_weight = length, padded, kld_weight
        self.last = padded // steps
        # The reference's creation order, so one seed gives the same initial weights.
        ins = (1, *CHANNELS[:-1])
        self.encoder = nn.Sequential(
            *(_down(i, o, kernel) for i, o in zip(ins, CHANNELS, strict=True))
        )
        self.to_latent = nn.Linear(self.last * CHANNELS[-1], latent)
        self.fc_mu = nn.Linear(latent + condition, latent)
        self.fc_var = nn.Linear(latent + condition, latent)
        self.to_decode = nn.Linear(latent + condition, self.last * CHANNELS[-1])
        back = CHANNELS[::-1]
        self.decoder = nn.Sequential(
            *(_up(i, o, kernel) for i, o in zip(back, back[1:], strict=False))
        )
        width = back[-1]
        self.final_layer = nn.Sequential(
            nn.ConvTranspose1d(width, width, kernel, 2, kernel // 2, output_padding=1),
            nn.BatchNorm1d(width),
            nn.ELU(),
            nn.Conv1d(width, 1, kernel, 1, kernel // 2),
        )

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, padded): zeros appended, or cut to the padded length."""
        if x.shape[-1] >= self.padded:
            return x[..., : self.padded]
        return F.pad(x, (0, self.padded - x.shape[-1]))

    def encode(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.to_latent(self.encoder(self.pad(x)[:, None, :]).flatten(1))
        h = torch.cat([h, c], dim=-1)
        return self.fc_mu(h), self.fc_var(h)

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.to_decode(torch.cat([z, c], dim=-1)).view(-1, CHANNELS[-1], self.last)
        return self.final_layer(self.decoder(h))[:, 0, :]

    def forward(self, x: torch.Tensor, c: torch.Tensor):
        """x: (B, L) flattened LoRAs, c: (B, condition). -> (loss, reconstruction, kld)."""
        mu, log_var = self.encode(x, c)
        z = mu + torch.randn_like(log_var) * torch.exp(0.5 * log_var)
        recons = F.mse_loss(self.decode(z, c), self.pad(x))
        kld = torch.mean(-0.5 * torch.sum(1 + log_var - mu**2 - log_var.exp(), dim=1))
        return recons + self.kld_weight * kld, recons, kld


def cosine_lr(lr: float, epoch: int, epochs: int) -> float:
    """The reference's CosineAnnealingLR(T_max = 2 x epochs), stepped once per epoch: the
    rate falls from lr to lr / 2 over the run."""
    return lr * (1 + math.cos(math.pi * epoch / (2 * epochs))) / 2


def flatten(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """The standardised, concatenated vector and each tensor's (mean, unbiased std); a
    constant tensor (an untrained zero B) keeps std 1, where the reference divides by 0."""
    stats = [(float(t.mean()), float(t.std()) or 1.0) for t in tensors]
    parts = [((t - m) / s).reshape(-1) for t, (m, s) in zip(tensors, stats, strict=True)]
    return torch.cat(parts), stats


def unflatten(vector: torch.Tensor, shapes: list[torch.Size],
              stats: list[tuple[float, float]]) -> list[torch.Tensor]:  # fmt: skip
    """Split a generated vector back into tensors, each de-standardised by its (mean, std)."""
    sizes = [math.prod(s) for s in shapes]
    parts = torch.split(vector[: sum(sizes)], sizes)
    return [p.reshape(s) * sd + m for p, s, (m, sd) in zip(parts, shapes, stats, strict=True)]
