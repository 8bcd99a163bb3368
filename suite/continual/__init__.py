"""The continual-learning track: a cell trains one method through a task sequence and
scores every task after every stage (docs/continual.md)."""
