"""peftbench engine: specs, registry, matrix expansion, cell runner, results store."""

__version__ = "0.1.0"
