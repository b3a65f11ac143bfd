"""Several writes of one transaction sent to PostgreSQL in ONE round trip.

A payment's phases end with writes whose results nothing reads back before the transaction commits: the
attempt and its allocations, the invoices' attempt numbers (phase 1); the attempt's outcome, the allocations
applied, the invoices paid, the audit events and the receipt (phase 3). Each was a round trip of its own.

`WriteBatch` collects them as the ORM writes them (an UPDATE of a QuerySet, an INSERT of model rows; Django
still compiles the SQL for each database) and `execute()` sends them together:

- On PostgreSQL, as one query string, the statements separated by semicolons. psycopg 3's client-side
  binding (Django's default; `server_side_binding` off) merges the parameters into the text, and
  PostgreSQL's simple-query protocol runs the statements in order, each as its own statement (its own
  snapshot under READ COMMITTED, its own row count), inside the caller's transaction. One round trip, as
  many results as statements (`nextset()`). An error in any statement raises from `execute()`, and the
  caller's atomic block rolls all of it back, as it would have for the statements sent one by one.
- Elsewhere (SQLite: in-process, no round trips to save, and its driver takes one statement per call; or
  PostgreSQL with server-side binding, which refuses parameters in a multi-statement query), the same
  statements run one by one, in order.

What a batch cannot hold: anything whose result decides what the code does next in the same transaction
(a conditional UPDATE whose row count matters before the end, a read). Those stay separate statements.
An INSERT may ask for the new primary keys (`returning=True`): they are set on the objects by `execute()`.
Before that they are None, so a later statement in the same batch names a new row by a unique key instead
(payments.services.attempt_open: the allocations find their attempt by its idempotency key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from django.core.exceptions import EmptyResultSet
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import AutoField, ForeignKey, Model, QuerySet
from django.db.models.expressions import DatabaseDefault
from django.db.models.sql import InsertQuery, UpdateQuery


@dataclass
class _Statement:
    sql: str
    params: tuple[Any, ...]
    # An INSERT's new rows; with `returning`, they get their primary keys (RETURNING, in row order).
    inserted: Sequence[Model] = ()
    returning: bool = False
    rowcount: int = field(default=-1)


@dataclass(frozen=True)
class _InsertShape:
    """An INSERT's SQL for a model, a number of rows and `returning`, when its values are plain (no expressions,
    no database defaults): the text is then the same every time, and only the parameters change. Django
    compiles it from the values each time (placeholders row by row, or PostgreSQL's UNNEST of one array per
    column); that was most of a batched insert's cost (bench/sweep_round_trips.py --cprofile)."""

    sql: str
    by_column: bool  # UNNEST: one list of values per column; else the rows' values one after the other

    def params(self, rows: list[list[Any]]) -> tuple[Any, ...]:
        if self.by_column:
            return tuple(list(column) for column in zip(*rows, strict=True))
        return tuple(value for row in rows for value in row)

    @classmethod
    def learn(cls, sql: str, params: tuple[Any, ...], rows: list[list[Any]] | None) -> _InsertShape | None:
        """The shape, if the parameters Django compiled are exactly what it would make of `rows` (else None:
        this statement is compiled every time, as before)."""
        if rows is None:
            return None
        for shape in (cls(sql, by_column=False), cls(sql, by_column=True)):
            made = shape.params(rows)
            if len(made) == len(params) and all(_same(a, b) for a, b in zip(made, params, strict=True)):
                return shape
        return None


# (model, rows, returning, database) → its shape, or None if it must be compiled every time.
_insert_shapes: dict[tuple[type[Model], int, bool, str], _InsertShape | None] = {}
_INSERT_SHAPES_KEPT = 512  # a row count per model seen in a process: a few dozen in practice


def _plain_rows(compiler: Any, fields: list[Any], objs: Sequence[Model], *, pre_save: bool = False) -> Any:
    """Each row's values as the insert compiler prepares them, or None if one is an expression or a
    database default. `pre_save`: run each field's pre_save (auto_now_add…), as compiling would; else the
    compiler has just run it, and the value is on the object."""
    rows = []
    for obj in objs:
        row = []
        for model_field in fields:
            value = compiler.pre_save_val(model_field, obj) if pre_save else getattr(obj, model_field.attname)
            if isinstance(value, DatabaseDefault) or hasattr(value, "resolve_expression"):
                return None
            value = compiler.prepare_value(model_field, value)
            if hasattr(value, "as_sql"):
                return None
            row.append(value)
        rows.append(row)
    return rows


def _same(a: Any, b: Any) -> bool:
    """Equal parameters; a JSON value is wrapped in an adapter (psycopg's Jsonb) compared by what it wraps."""
    if type(a) is not type(b):
        return False
    if hasattr(a, "obj") and not isinstance(a, int | str | bytes):
        return bool(a.obj == b.obj and getattr(a, "dumps", None) == getattr(b, "dumps", None))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class WriteBatch:
    """Writes collected in order, then sent in one round trip (PostgreSQL) or one by one (elsewhere)."""

    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        self.using = using
        self._statements: list[_Statement] = []
        self.executed = False

    def __len__(self) -> int:
        return len(self._statements)

    def update(self, queryset: QuerySet[Any], **values: Any) -> None:
        """`queryset.update(**values)`, as a statement of the batch (its row count: `rowcounts()`)."""
        if queryset.query.is_sliced or queryset.query.distinct_fields:
            raise TypeError("a batched update takes a plain filtered QuerySet")
        query = cast(UpdateQuery, queryset.query.chain(UpdateQuery))
        query.add_update_values(values)
        query.clear_select_clause()
        if query.get_related_updates():
            raise TypeError("a batched update writes one table")
        if queryset.db != self.using:
            raise TypeError(f"this batch writes to {self.using!r}, not {queryset.db!r}")
        try:
            sql, params = query.get_compiler(self.using).as_sql()
        except EmptyResultSet:  # filtered to nothing (pk__in=[]): nothing to send, as update() returns 0
            self._add(_Statement("", (), rowcount=0))
            return
        self._add(_Statement(sql, tuple(params)))

    def insert(self, objs: Sequence[Model], *, returning: bool = False) -> None:
        """`bulk_create(objs)` of new rows (not saved or read from the database), as one statement of the
        batch; with `returning`, their primary keys are set on `objs` by execute()."""
        if not objs:
            return
        model = type(objs[0])
        opts = model._meta
        fields = [f for f in opts.concrete_fields if not f.generated and not isinstance(f, AutoField)]
        keys = [f for f in fields if isinstance(f, ForeignKey)]
        for obj in objs:
            if type(obj) is not model or not obj._state.adding:
                raise TypeError("a batched insert takes new rows of one model")
            for key in keys:  # as bulk_create does: a related object must be saved before it is named
                related = key.get_cached_value(obj) if key.is_cached(obj) else None
                if related is None:
                    continue
                if related.pk is None:
                    raise ValueError(f"save {key.name} before inserting {opts.object_name} in a batch")
                if getattr(obj, key.attname) is None:  # assigned before it was saved
                    setattr(obj, key.attname, related.pk)
        query = InsertQuery(model)
        query.insert_values(fields, list(objs))
        compiler = query.get_compiler(self.using)
        connection = connections[self.using]
        if returning:
            if not connection.features.can_return_rows_from_bulk_insert and len(objs) > 1:
                raise TypeError("this database returns the key of one inserted row at a time")
            compiler.returning_fields = [opts.pk]
        shape_key = (model, len(objs), returning, self.using)
        shape = _insert_shapes.get(shape_key)
        if shape is not None:
            rows = _plain_rows(compiler, fields, objs, pre_save=True)
            if rows is not None:  # the usual case: the statement compiled before, with these rows' values
                self._add(_Statement(shape.sql, shape.params(rows), inserted=objs, returning=returning))
                return
        (sql, params), *more = compiler.as_sql()
        if more:
            raise TypeError("this database inserts these rows in several statements")
        if shape_key not in _insert_shapes and len(_insert_shapes) < _INSERT_SHAPES_KEPT:
            _insert_shapes[shape_key] = _InsertShape.learn(
                sql, tuple(params), _plain_rows(compiler, fields, objs)
            )
        self._add(_Statement(sql, tuple(params), inserted=objs, returning=returning))

    def _add(self, statement: _Statement) -> None:
        if self.executed:
            raise RuntimeError("this batch was executed already")
        self._statements.append(statement)

    def rowcounts(self) -> list[int]:
        """Each statement's row count, in order (after execute())."""
        return [s.rowcount for s in self._statements]

    def execute(self) -> None:
        """Send the statements: in ONE round trip on PostgreSQL with client-side binding, else one by one."""
        if self.executed:
            raise RuntimeError("this batch was executed already")
        self.executed = True
        statements = [s for s in self._statements if s.sql]
        if not statements:
            return
        connection = connections[self.using]
        together = (
            len(statements) > 1
            and connection.vendor == "postgresql"
            and (connection.settings_dict.get("OPTIONS", {}).get("server_side_binding") is not True)
        )
        # As save(), update() and bulk_create(): an error marks the caller's atomic block for rollback, so
        # statements that ran before it (one by one, on SQLite) can never be committed without the rest.
        with transaction.mark_for_rollback_on_error(using=self.using), connection.cursor() as cursor:
            if together:
                cursor.execute(
                    ";\n".join(s.sql for s in statements),
                    tuple(p for s in statements for p in s.params),
                )
                for i, statement in enumerate(statements):
                    if i and not cursor.cursor.nextset():
                        raise RuntimeError("PostgreSQL answered fewer statements than were sent")
                    self._took(cursor, statement)
            else:
                for statement in statements:
                    cursor.execute(statement.sql, statement.params)
                    self._took(cursor, statement)
        for statement in statements:
            for obj in statement.inserted:  # saved, as bulk_create leaves them
                obj._state.adding = False
                obj._state.db = self.using

    @staticmethod
    def _took(cursor: Any, statement: _Statement) -> None:
        if not statement.returning:
            statement.rowcount = cursor.rowcount
        else:
            rows = cursor.fetchall()
            statement.rowcount = len(rows)  # SQLite counts a RETURNING statement's rows only as they are read
            if len(rows) != len(statement.inserted):
                raise RuntimeError("the database returned a different number of keys than rows inserted")
            for obj, (pk,) in zip(statement.inserted, rows, strict=True):
                obj.pk = pk
