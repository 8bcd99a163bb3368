"""How a result type's fields become columns of its store table (suite/store/columns.py
derives the columns from the types): the markers a field carries where its Python type
does not say it all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

# Every field a result type dumps is a column of its store table (suite/store/columns.py
# derives the columns from these types): a new field is a new column, with no list to
# edit. A field that goes to a table of its own says so (`Elsewhere`); a count stored
# in 32 bits, as the first stores had it, is an `Int32` (other ints are BIGINT).


@dataclass(frozen=True)
class Elsewhere:
    """Marks a result field that is not a column of the row: `table` holds it instead."""

    table: str


@dataclass(frozen=True)
class SqlType:
    """The SQL type of a field where its Python type does not tell it."""

    sql: str


Int32 = Annotated[int, SqlType("INTEGER")]
