"""peftbench engine: specs, registry, matrix expansion, cell runner, results store."""

import logging

__version__ = "0.1.0"

# Third-party start-up noise, silenced in every process that imports the suite (the
# driver and the Ray workers): torchao, which transformers imports to load any model,
# warns that its CUDA-only extensions do not load on a CPU machine, and torch that
# torchao registers Enum constants the deprecated way; bitsandbytes (4-bit bases) that
# the optional `kernels` package, which fetches its kernels from a hub at run time, is
# missing. None is anything a user can act on offline; each printed before a command's
# output. Errors still show.
for _noisy in ("torchao", "torch.utils._pytree", "bitsandbytes.backends.cpu.ops"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)
