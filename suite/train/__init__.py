"""The trained cell's pipeline (runner.py): load, prepare, train, evaluate, measure, save."""
