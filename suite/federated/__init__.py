"""The federated track: simulated clients, local LoRA training, server aggregation."""
