"""The contract every method plugin implements, and helpers shared by many methods."""
