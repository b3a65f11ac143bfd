"""ORM queries compiled once per process, then run with new parameters.

Building and compiling a QuerySet (filter → where tree → SQL) is pure Python and costs the same on every
call; for a small, hot read it costs more than PostgreSQL's work. Measured on the Settle balance pane: the
in-flight check spends 4–5 ms compiling against 1.5–2.3 ms in the database (bench/load.py, bench/pages.py).

`CompiledQuery` keeps the query written once, as an ORM QuerySet: it builds it with stand-in values for
its parameters, compiles it, remembers where in the parameter list each stand-in landed, and from then on
runs the same SQL with the real values through `Model.objects.raw`. So there is still one definition of
the query (no hand-written copy to keep in step), and Django still writes the SQL for each database.

Limits, checked when a query is first compiled (a query outside them raises instead of running wrongly):
- parameters are ids: ints, or sequences of ints (each length is its own compiled statement; an empty
  sequence never reaches the database, the caller's `empty` result stands for it);
- every stand-in must appear among the compiled parameters, once or more (an ORM that folded one into the
  SQL text would otherwise run with the stand-in's value);
- plain model rows only: no select_related, prefetch, values() or extra/annotated columns, which raw()
  could not map back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db.models import Model, QuerySet
from django.db.models.query import ModelIterable

type Ids = int | Sequence[int]
# Stand-ins: far outside any id, distinct per parameter and position. Negative, so no serial id matches one.
_STAND_IN_BASE = -7_300_000_000_000
_STAND_IN_STRIDE = 1_000_000

type Shape = tuple[tuple[str, int | None], ...]  # (keyword, None for an int or the sequence's length), sorted


@dataclass(frozen=True)
class _Statement[M: Model]:
    model: type[M]
    using: str
    sql: str
    params: tuple[object, ...]  # the compiled parameters, the stand-ins' values left in place
    slots: tuple[tuple[int, str, int], ...]  # (position in params, keyword, index in its value)

    def run(self, ids: dict[str, Ids]) -> list[M]:
        params = list(self.params)
        for position, name, index in self.slots:
            value = ids[name]
            params[position] = value if isinstance(value, int) else value[index]
        return list(self.model._default_manager.db_manager(self.using).raw(self.sql, params))


class CompiledQuery[M: Model]:
    """`build(**ids)` returns the QuerySet; calling the CompiledQuery with the same keywords returns its rows,
    as `list(build(**ids))` would."""

    def __init__(self, build: Callable[..., QuerySet[M]]) -> None:
        self._build = build
        self._statements: dict[Shape, _Statement[M]] = {}
        self._lock = threading.Lock()

    def __call__(self, **ids: Ids) -> list[M]:
        if any(not isinstance(value, int) and len(value) == 0 for value in ids.values()):
            return []  # `x__in=[]` matches nothing: Django does not send such a query either
        shape = tuple(
            (name, None if isinstance(value, int) else len(value)) for name, value in sorted(ids.items())
        )
        statement = self._statements.get(shape)
        if statement is None:
            with self._lock:
                statement = self._statements.get(shape) or self._compile(shape)
                self._statements[shape] = statement
        return statement.run(ids)

    def _compile(self, shape: Shape) -> _Statement[M]:
        stand_ins: dict[int, tuple[str, int]] = {}
        kwargs: dict[str, Ids] = {}
        for n, (name, length) in enumerate(shape):
            first = _STAND_IN_BASE - n * _STAND_IN_STRIDE
            values = [first - i for i in range(1 if length is None else length)]
            stand_ins.update({value: (name, i) for i, value in enumerate(values)})
            kwargs[name] = values[0] if length is None else values
        queryset = self._build(**kwargs)
        query = queryset.query
        if (
            queryset._iterable_class is not ModelIterable
            or query.select_related
            or vars(queryset).get("_prefetch_related_lookups")
            or query.annotation_select
            or query.extra_select
            or query.deferred_loading[0]
        ):
            raise TypeError("CompiledQuery runs plain model queries only (see billing_portal.compiled)")
        sql, params = query.get_compiler(using=queryset.db).as_sql()
        slots = []
        unused = set(stand_ins)
        for position, param in enumerate(params):
            if type(param) is int and param in stand_ins:  # a value may be used more than once
                slots.append((position, *stand_ins[param]))
                unused.discard(param)
            elif type(param) is int and param < _STAND_IN_BASE + _STAND_IN_STRIDE:
                raise TypeError(f"CompiledQuery: the parameter {param} looks like a changed stand-in")
        if unused:  # a value the ORM wrote into the SQL text, or dropped: it could not be replaced
            names = ", ".join(sorted({stand_ins[value][0] for value in unused}))
            raise TypeError(f"CompiledQuery: {names} did not reach the SQL as a parameter")
        return _Statement(queryset.model, queryset.db, sql, tuple(params), tuple(slots))
