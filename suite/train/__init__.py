"""The cell runner: load, adapt, train, evaluate, measure."""
