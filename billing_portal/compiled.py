"""ORM queries compiled once per process, then run with new parameters.

Building and compiling a QuerySet (filter → where tree → SQL) is pure Python and costs the same on every
call; for a small, hot read it costs more than PostgreSQL's work. Measured on the Settle balance pane: the
in-flight check spends 4–5 ms compiling against 1.5–2.3 ms in the database (bench/load.py, bench/pages.py).

`CompiledQuery` keeps the query written once, as an ORM QuerySet: it builds it with stand-in values for
its parameters, compiles it, remembers where in the parameter list each stand-in landed, and from then on
runs the same SQL with the real values, turning rows into model instances as the QuerySet would (the
database's value converters, `Model.from_db`, the related object cached on its field). So there is still
one definition of the query (no hand-written copy to keep in step), and Django still writes the SQL for
each database.

`build` must depend on its ids alone: whatever else it reads (a setting, the time, a table) is compiled in
with the first call's value. Limits, checked when a query is first compiled (a query outside them raises
instead of running wrongly):
- parameters are ids: ints or strings (compared as they are: a value worked out from a stand-in, as for
  `__startswith` or `.upper()`, is refused: the query is compiled with two sets of stand-ins, and any other
  parameter that differs between them is such a value), or sequences of ints (each length is its own compiled
  statement; a call with an empty sequence, or one holding anything but ints, runs the QuerySet itself); or aware datetimes compared with a DateTimeField and dates
  compared with a DateField, as they are (`next_attempt_at__lte=now`, `due_on__lt=today`), adapted for the
  database as the ORM adapts them. Their stand-ins are in the years 2 and 3, so a value worked out from one
  in Python (`now - lookback`, `now.date()`, `today - 1 day`) is still before the year 4 and refused: pass
  such a value as a parameter of its own;
- every stand-in must appear among the compiled parameters, once or more (an ORM that folded one into the
  SQL text would otherwise run with the stand-in's value);
- model rows with all their fields, annotations, select_related over forward foreign keys (any depth) and
  select_for_update, and over reverse one-to-one keys (the row there or not, cached either way as the
  QuerySet caches it); no values(), only()/defer(), extra columns, prefetches or reverse foreign keys.

`CompiledRows` does the same for a `values_list()` query (its union with others too): it returns the
rows as tuples (or single values, with flat=True), through the same converters.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model, QuerySet
from django.db.models.query import FlatValuesListIterable, ModelIterable, ValuesListIterable
from django.db.models.sql import Query
from django.db.transaction import TransactionManagementError

type Ids = int | str | Sequence[int] | dt.date
# (keyword, kind), sorted; kind: None for an int or a string, the sequence's length, MOMENT for a datetime,
# DAY for a date.
type Shape = tuple[tuple[str, int | str | None], ...]
MOMENT = "moment"
DAY = "day"
TEXT = "text"

# Stand-ins: far outside any id, distinct per parameter and position. Negative, so no serial id matches one.
_STAND_IN_BASE = -7_300_000_000_000
_STAND_IN_STRIDE = 1_000_000
_LONGEST = _STAND_IN_STRIDE // 2  # the second set of stand-ins starts half a stride further down
# A datetime's stand-in: 1 January of the year 2 UTC, its microseconds telling the parameters apart. Any date
# or datetime before the year 4 among the compiled parameters is taken for one worked out from a stand-in.
_MOMENT_BASE = dt.datetime(2, 1, 1, tzinfo=dt.UTC)
# A date's: from 1 January of the year 3, 53 days apart, so that a parameter a day or a week off another's
# stand-in is not taken for it.
_DAY_BASE = dt.date(3, 1, 1)
_DAY_STRIDE = dt.timedelta(days=53)
_MOMENT_NEAR = dt.date(4, 1, 1)
# A string's: text no value of ours contains; a parameter that contains it but is not it was worked out from it.
# Upper and lower case, and the characters LIKE escapes (% _ \\): a lookup that changes the value it sends
# (iexact on SQLite escapes it, istartswith adds a %) leaves the stand-in out, and is refused.
_TEXT_MARK = "\u2063Compiled_stand-in%\\\u2063"
# Connections whose converters a statement keeps: one per process in gunicorn's and Celery's workers, one per
# thread where each request has a thread of its own.
_CONVERTERS_KEPT = 8


def _near_a_stand_in(param: object) -> bool:
    """A compiled parameter that looks derived from a stand-in: a date before the year 4 (SQLite gets them as
    text), or text containing a string's stand-in (`token__startswith`, `name.upper()`)."""
    if isinstance(param, str) and _TEXT_MARK in param:
        return True
    if isinstance(param, dt.datetime):
        return param.date() < _MOMENT_NEAR
    if isinstance(param, dt.date):
        return param < _MOMENT_NEAR
    return isinstance(param, str) and param[:4] in ("0001", "0002", "0003") and param[4:5] == "-"


@dataclass(frozen=True)
class _Part:
    """One model's columns in a row: the queried model, or one it selects related (with the field's setter)."""

    model: type[Model]
    start: int
    end: int
    attnames: tuple[str, ...]
    pk_index: int
    # For a related model: the part whose object holds the foreign key (0 is the row's own model), and the
    # key's cache setter, which puts the related object (or None) on it.
    parent: int = 0
    set_on: Callable[[Model, Model | None], None] | None = None
    # And the reverse side's setter (a one-to-one key caches the holder on the related object; else a no-op).
    set_back: Callable[[Model, Model], None] | None = None


@dataclass(frozen=True)
class _Sql:
    """A compiled statement and where its parameters go."""

    query: Query  # as built with the stand-ins: gives the value converters for the connection in use
    using: str
    sql: str
    params: tuple[object, ...]  # the compiled parameters, the stand-ins' values left in place
    slots: tuple[tuple[int, str, int], ...]  # (position in params, keyword, index in its value)
    moments: tuple[tuple[int, str], ...]  # (position in params, keyword) of a datetime parameter
    days: tuple[tuple[int, str], ...]  # (position in params, keyword) of a date parameter
    columns: tuple[Any, ...]  # the selected column expressions, for their converters
    locks: bool  # SELECT … FOR UPDATE, on a database that has it
    # The columns' value converters, worked out once per connection (they are the connection's methods, and
    # finding them walks every column: 2 ms a dunning run under cProfile).
    converters: dict[int, tuple[BaseDatabaseWrapper, Any]] = field(default_factory=dict, compare=False)

    def rows(self, ids: dict[str, Ids]) -> Any:
        """Run it with these values: the rows, converted as the QuerySet converts them."""
        params = list(self.params)
        for position, name, index in self.slots:
            value = ids[name]
            assert not isinstance(value, dt.date)  # those have slots of their own (moments, days)
            params[position] = value if isinstance(value, int | str) else value[index]
        compiler = self.query.get_compiler(using=self.using)  # no SQL is written: only for the connection
        ops = compiler.connection.ops
        for position, name in self.moments:
            params[position] = ops.adapt_datetimefield_value(ids[name])
        for position, name in self.days:
            params[position] = ops.adapt_datefield_value(ids[name])
        if self.locks and compiler.connection.get_autocommit():  # as Django's compiler refuses it
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        with _cursor(compiler.connection) as cursor:
            cursor.execute(self.sql, params)
            rows: Any = cursor.fetchall()
        cached = self.converters.get(id(compiler.connection))
        if cached is None or cached[0] is not compiler.connection:  # kept with its connection: no id reuse
            cached = (compiler.connection, compiler.get_converters(self.columns))
            if len(self.converters) >= _CONVERTERS_KEPT:  # a connection per thread (runserver): start again
                self.converters.clear()
            self.converters[id(compiler.connection)] = cached
        converters = cached[1]
        if converters:
            rows = compiler.apply_converters(rows, converters)
        return rows


@dataclass(frozen=True)
class _Statement[M: Model]:
    sql: _Sql
    model: type[M]
    main: _Part
    related: tuple[_Part, ...]  # parents before their children
    annotations: tuple[tuple[str, int], ...]  # (attribute, position in the row)

    def run(self, ids: dict[str, Ids]) -> list[M]:
        rows = self.sql.rows(ids)
        using = self.sql.using
        main = self.main
        found: list[M] = []
        objects: list[Model | None] = [None] * (len(self.related) + 1)
        for row in rows:
            obj = self.model.from_db(using, main.attnames, row[main.start : main.end])
            objects[0] = obj
            for n, part in enumerate(self.related, start=1):
                holder = objects[part.parent]
                if holder is None:  # a null key further up: nothing below it either
                    objects[n] = None
                    continue
                values = row[part.start : part.end]
                other = (
                    None
                    if values[part.pk_index] is None
                    else part.model.from_db(using, part.attnames, values)
                )
                assert part.set_on is not None
                assert part.set_back is not None
                part.set_on(holder, other)
                if other is not None:
                    part.set_back(other, holder)
                objects[n] = other
            for name, position in self.annotations:
                setattr(obj, name, row[position])
            found.append(obj)
        return found


def _cursor(connection: BaseDatabaseWrapper) -> Any:
    """A cursor whose statements PostgreSQL keeps prepared on the connection, where settings allow it (a
    `prepare_threshold` in OPTIONS: billing_portal/settings.py), else the connection's usual cursor.

    Django's PostgreSQL cursor binds parameters on the client, so every statement is parsed and planned
    again. A compiled query is the same SQL every time: prepared once per connection (psycopg sends Parse
    once and then only Bind/Execute), it skips the parse, and PostgreSQL may keep a generic plan. Measured
    on phase 3's allocations read: 2.2 ms → 1.75 ms in PostgreSQL's log (docs/ARCHITECTURE.md,
    "Compiled queries"). It goes through Django's wrapper, so query logs and counts still see it."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:  # prepared statements off (DATABASE_PREPARED_STATEMENTS=0)
        return connection.cursor()
    with connection.wrap_database_errors:
        # Wrapped as connection.cursor() wraps its own (Django's _prepare_cursor: thread check, query log).
        # psycopg's own server-binding cursor: the connection's cursor_factory is Django's client-binding one.
        import psycopg  # PostgreSQL only: not imported where SQLite runs alone
        from django.db.backends.postgresql.psycopg_any import register_tzloader

        cursor = psycopg.Cursor(raw)
        # As Django's create_cursor: datetimes read in the connection's time zone where the connection's
        # loader disagrees (USE_TZ or TIME_ZONE changed since it connected: override_settings).
        oid = psycopg.adapters.types["timestamptz"].oid
        django_connection: Any = connection
        if django_connection.timezone != raw.adapters.get_loader(oid, psycopg.pq.Format.TEXT).timezone:
            register_tzloader(django_connection.timezone, cursor)
        return django_connection._prepare_cursor(_Prepared(cursor))


class _Prepared:
    """A psycopg cursor whose execute() prepares the statement (once per connection: psycopg keeps it)."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self._last: tuple[str, Sequence[Any] | None] = ("", None)

    def execute(self, query: str, params: Sequence[Any] | None = None) -> None:
        import psycopg

        self._last = (query, params)
        try:
            self._cursor.execute(query, params, prepare=True)
        except psycopg.errors.FeatureNotSupported:
            # "cached plan must not change result type": a migration run meanwhile from another connection
            # changed a column this statement reads (its type or length). psycopg forgets its prepared
            # statements on a rollback, but a read in autocommit never rolls back, and the kept connection
            # would fail the same way on every call until CONN_MAX_AGE ran out. Outside a transaction,
            # deallocate them (psycopg forgets its own record too) and run it once more, prepared anew.
            # Inside one, the transaction is lost anyway; its rollback clears them for the next call.
            connection = self._cursor.connection
            if connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                raise
            connection.execute("DEALLOCATE ALL")
            self._cursor.execute(query, params, prepare=True)

    @property
    def _query(self) -> Any:
        """What Django's query log reads (`last_executed_query`, only when queries are logged: DEBUG or a
        CaptureQueriesContext): the statement with its values in place, as the client-binding cursor would
        have sent it, not the prepared text with $1 placeholders."""
        import psycopg

        query, params = self._last
        text = psycopg.ClientCursor(self._cursor.connection).mogrify(query, params)
        return _Sent(text.encode())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


@dataclass(frozen=True)
class _Sent:
    query: bytes


class _Compiled[S]:
    """A statement per shape of the call (which keywords, and how long each sequence), compiled on first use."""

    def __init__(self, build: Callable[..., QuerySet[Any, Any]]) -> None:
        self._build = build
        self._statements: dict[Shape, S] = {}
        self._lock = threading.Lock()

    def _statement(self, ids: dict[str, Ids]) -> S:
        shape = tuple((name, _kind(name, value)) for name, value in sorted(ids.items()))
        statement = self._statements.get(shape)
        if statement is None:
            with self._lock:
                statement = self._statements.get(shape) or self._compile(shape)
                self._statements[shape] = statement
        return statement

    def _compile(self, shape: Shape) -> S:
        raise NotImplementedError

    def _sql(self, shape: Shape, check: Callable[[QuerySet[Any, Any]], None]) -> tuple[_Sql, Any, Any]:
        """Build the QuerySet with stand-ins, `check` it, compile it and find each stand-in in its parameters:
        the statement, the compiler and the QuerySet.

        Compiled twice, with two sets of stand-ins: every parameter that is not a stand-in must be the same
        both times. One that changed was worked out from a stand-in (`name.upper()`, `startswith`'s escaping
        and `%`, `str(id)`), even where the same keyword also reached the SQL unchanged elsewhere."""
        statement, compiler, queryset = self._place(shape, check, variant=0)
        other, _compiler, _queryset = self._place(shape, check, variant=1)
        placed = {position for position, *_rest in (*statement.slots, *statement.moments, *statement.days)}
        if (
            other.sql != statement.sql
            or (other.slots, other.moments, other.days)
            != (statement.slots, statement.moments, statement.days)
            or any(
                a != b
                for position, (a, b) in enumerate(zip(statement.params, other.params, strict=True))
                if position not in placed
            )
        ):
            raise TypeError("CompiledQuery: a parameter was worked out from a stand-in")
        return statement, compiler, queryset

    def _place(
        self, shape: Shape, check: Callable[[QuerySet[Any, Any]], None], *, variant: int
    ) -> tuple[_Sql, Any, Any]:
        """`_sql` with one set of stand-ins (`variant` 0 or 1)."""
        stand_ins: dict[int | str, tuple[str, int]] = {}
        dated: dict[dt.date, tuple[str, str]] = {}  # stand-in → (keyword, MOMENT or DAY)
        kwargs: dict[str, Ids] = {}
        for n, (name, length) in enumerate(shape):
            if length == MOMENT:
                moment = _MOMENT_BASE + dt.timedelta(days=7 * variant, microseconds=n + 1)
                dated[moment] = (name, MOMENT)
                kwargs[name] = moment
                continue
            if length == DAY:
                day = _DAY_BASE + n * _DAY_STRIDE + dt.timedelta(days=26 * variant)
                dated[day] = (name, DAY)
                kwargs[name] = day
                continue
            if length == TEXT:
                text = f"{_TEXT_MARK}{n}.{variant}{_TEXT_MARK}"
                stand_ins[text] = (name, 0)
                kwargs[name] = text
                continue
            assert not isinstance(length, str)
            assert length is None or length < _LONGEST  # longer ones run the QuerySet (_orm_decides)
            first = _STAND_IN_BASE - n * _STAND_IN_STRIDE - variant * _LONGEST
            values = [first - i for i in range(1 if length is None else length)]
            stand_ins.update({value: (name, i) for i, value in enumerate(values)})
            kwargs[name] = values[0] if length is None else values
        queryset = self._build(**kwargs)
        check(queryset)
        query = queryset.query
        compiler = query.get_compiler(using=queryset.db)
        sql, params = compiler.as_sql()
        ops = compiler.connection.ops
        adapted = {
            (
                ops.adapt_datetimefield_value(stand_in)
                if kind == MOMENT
                else ops.adapt_datefield_value(stand_in)
            ): (name, kind)
            for stand_in, (name, kind) in dated.items()
        }
        slots = []
        moments: list[tuple[int, str]] = []
        days: list[tuple[int, str]] = []
        unused = set(stand_ins) | set(adapted)
        for position, param in enumerate(params):
            if type(param) in (int, str) and param in stand_ins:  # a value may be used more than once
                slots.append((position, *stand_ins[param]))
                unused.discard(param)
            elif type(param) is int and param < _STAND_IN_BASE + _STAND_IN_STRIDE:
                raise TypeError(f"CompiledQuery: the parameter {param} looks like a changed stand-in")
            elif isinstance(param, dt.date | str) and param in adapted:
                name, kind = adapted[param]
                (moments if kind == MOMENT else days).append((position, name))
                unused.discard(param)
            elif _near_a_stand_in(param):
                raise TypeError(f"CompiledQuery: the parameter {param!r} looks like a changed stand-in")
        if unused:  # a value the ORM wrote into the SQL text, or dropped: it could not be replaced
            names = ", ".join(
                sorted({stand_ins[value][0] if value in stand_ins else adapted[value][0] for value in unused})
            )
            raise TypeError(f"CompiledQuery: {names} did not reach the SQL as a parameter")
        statement = _Sql(
            query=query,
            using=queryset.db,
            sql=sql,
            params=tuple(params),
            slots=tuple(slots),
            moments=tuple(moments),
            days=tuple(days),
            columns=tuple(column for column, _sql, _alias in compiler.select[: compiler.col_count]),
            locks=bool(query.select_for_update and compiler.connection.features.has_select_for_update),
        )
        return statement, compiler, queryset


class CompiledQuery[M: Model](_Compiled[_Statement[M]]):
    """`build(**ids)` returns the QuerySet; calling the CompiledQuery with the same keywords returns its rows,
    as `list(build(**ids))` would."""

    def __init__(self, build: Callable[..., QuerySet[M]]) -> None:
        super().__init__(build)

    def __call__(self, **ids: Ids) -> list[M]:
        if _orm_decides(ids):
            return list(self._build(**ids))
        return self._statement(ids).run(ids)

    def _compile(self, shape: Shape) -> _Statement[M]:
        def check(queryset: QuerySet[Any, Any]) -> None:
            query = queryset.query
            if (
                queryset._iterable_class is not ModelIterable
                or vars(queryset).get("_prefetch_related_lookups")
                or vars(queryset).get("_known_related_objects")
                or query.extra_select
                or query.deferred_loading[0]
                or query.combinator
            ):
                raise TypeError("CompiledQuery runs plain model queries only (see billing_portal.compiled)")

        statement, compiler, queryset = self._sql(shape, check)
        parts = [self._part(compiler.select, compiler.klass_info)]
        pending = [(0, info) for info in compiler.klass_info.get("related_klass_infos", [])]
        while pending:  # depth first, so a part's parent comes before it
            parent, info = pending.pop(0)
            field = info.get("field")
            single = field is not None and (
                field.one_to_one or (field.many_to_one and not info.get("reverse"))
            )  # one object or none on the holder: a forward key, or a one-to-one either way
            if not single or info.get("from_parent"):
                raise TypeError("CompiledQuery selects related over forward foreign keys only")
            parts.append(
                self._part(
                    compiler.select,
                    info,
                    parent=parent,
                    set_on=info["local_setter"],
                    set_back=info["remote_setter"],
                )
            )
            pending[:0] = [(len(parts) - 1, child) for child in info.get("related_klass_infos", [])]
        return _Statement(
            sql=statement,
            model=queryset.model,
            main=parts[0],
            related=tuple(parts[1:]),
            annotations=tuple((compiler.annotation_col_map or {}).items()),
        )

    @staticmethod
    def _part(
        select: Any, info: dict[str, Any], *, parent: int = 0, set_on: Any = None, set_back: Any = None
    ) -> _Part:
        fields = info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        if list(fields) != list(range(start, end)):
            raise TypeError("CompiledQuery: a model's columns are not together in the row")
        model = info["model"]
        attnames = tuple(column.target.attname for column, _sql, _alias in select[start:end])
        if attnames != tuple(f.attname for f in model._meta.concrete_fields):
            raise TypeError("CompiledQuery: every field of the model must be selected")
        pk_index = attnames.index(model._meta.pk.attname)
        return _Part(model, start, end, attnames, pk_index, parent, set_on, set_back)


def _orm_decides(ids: dict[str, Ids]) -> bool:
    """A sequence no stand-ins can take the place of: the QuerySet itself runs. An empty one (what `x__in=[]`
    means depends on the query: nothing matches, but not under an OR; the ORM usually sends nothing at all),
    or one holding anything but ints (the ORM drops a None from `__in`, and converts other values itself), or
    one so long that its stand-ins would run into the next keyword's."""
    for value in ids.values():
        if isinstance(value, int | str | dt.date):
            continue
        if not 0 < len(value) < _LONGEST or any(type(item) is not int for item in value):
            return True
    return False


def _kind(name: str, value: Ids) -> int | str | None:
    if isinstance(value, int):
        return None
    if isinstance(value, str):
        return TEXT
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # the ORM would make it aware with a warning; a compiled query refuses it
            raise TypeError(f"CompiledQuery: {name} must be an aware datetime")
        return MOMENT
    if isinstance(value, dt.date):
        return DAY
    return len(value)


@dataclass(frozen=True)
class _RowsStatement:
    sql: _Sql
    flat: bool


class CompiledRows(_Compiled[_RowsStatement]):
    """`build(**ids)` returns a `values_list()` QuerySet (a union of them too); calling the CompiledRows
    returns `list(build(**ids))`: tuples, or single values if it is flat."""

    def __call__(self, **ids: Ids) -> list[Any]:
        if _orm_decides(ids):
            return list(self._build(**ids))
        statement = self._statement(ids)
        rows = statement.sql.rows(ids)
        return [row[0] for row in rows] if statement.flat else [tuple(row) for row in rows]

    def _compile(self, shape: Shape) -> _RowsStatement:
        def check(queryset: QuerySet[Any, Any]) -> None:
            if queryset._iterable_class not in (ValuesListIterable, FlatValuesListIterable) or vars(
                queryset
            ).get("_prefetch_related_lookups"):
                raise TypeError("CompiledRows runs values_list() queries only (see billing_portal.compiled)")

        statement, _compiler, queryset = self._sql(shape, check)
        return _RowsStatement(sql=statement, flat=queryset._iterable_class is FlatValuesListIterable)
