"""Task data loading, tokenisation and metrics."""
