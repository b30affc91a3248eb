"""Set-based writes the ORM has no single statement for.

`update_objects` (and `update_by_pk`, one column) sets columns of many rows, each row to its own
values. Django's `bulk_update` builds a CASE with one branch per row and field, which PostgreSQL
evaluates for every row (quadratic) and Django takes long to compile; on PostgreSQL this is one
`UPDATE ... FROM unnest(ids, values...)`. `insert_rows` inserts without a model object per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Field, ForeignKey, Model


def update_by_pk(model: type[Model], field_name: str, values: dict[int, Any]) -> int:
    """Set `field_name` of each row whose primary key is in `values` to its value, in one statement;
    returns how many rows were updated."""
    if not values:
        return 0
    field = _column(model, field_name)
    rows = [model(pk=pk, **{field.attname: value}) for pk, value in values.items()]
    return update_objects(rows, [field_name])


def update_objects(objects: Sequence[Model], field_names: list[str]) -> int:
    """`bulk_update(objects, field_names)` in one statement: on PostgreSQL `UPDATE ... FROM
    unnest(<ids>, <one array per field>)`; elsewhere Django's `bulk_update`."""
    if not objects:
        return 0
    model = type(objects[0])
    if connection.vendor != "postgresql":
        return model._default_manager.bulk_update(objects, field_names)
    fields = [_column(model, name) for name in field_names]
    pk = model._meta.pk
    assert pk is not None  # every concrete model has one
    arrays: list[list[Any]] = [[obj.pk for obj in objects]]
    arrays += [
        [field.get_db_prep_value(getattr(obj, field.attname), connection) for obj in objects] for field in fields
    ]
    types = [pk.db_type(connection)] + [
        field.rel_db_type(connection) if isinstance(field, ForeignKey) else field.db_type(connection)
        for field in fields
    ]
    names = ["id"] + [f"v{n}" for n in range(len(fields))]
    assignments = ", ".join(f'"{field.column}" = v.{name}' for field, name in zip(fields, names[1:], strict=True))
    unnest = ", ".join(f"%s::{db_type}[]" for db_type in types)
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{model._meta.db_table}" AS t SET {assignments} '
            f"FROM unnest({unnest}) AS v({', '.join(names)}) "
            f'WHERE t."{pk.column}" = v.id',
            arrays,
        )
        return int(cursor.rowcount)


def _column(model: type[Model], name: str) -> Field:
    field = model._meta.get_field(name)
    if not isinstance(field, Field):
        raise TypeError(f"{name} is not a column of {model.__name__}")
    return field


def insert_rows(model: type[Model], rows: list[dict[str, Any]], *, ignore_conflicts: bool = False) -> None:
    """Insert many rows given as {field name: value} (every row the same fields), in one statement:
    on PostgreSQL `INSERT ... SELECT * FROM unnest(<one array per column>)`, without building a model
    object per row (which costs more than the insert at market size); elsewhere `bulk_create`."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create([model(**row) for row in rows], ignore_conflicts=ignore_conflicts)
        return
    fields = [_column(model, name) for name in rows[0]]
    columns, arrays, types = [], [], []
    for name, field in zip(rows[0], fields, strict=True):
        columns.append(f'"{field.column}"')
        types.append(field.rel_db_type(connection) if isinstance(field, ForeignKey) else field.db_type(connection))
        arrays.append([field.get_db_prep_value(row[name], connection) for row in rows])
    unnest = ", ".join(f"%s::{db_type}[]" for db_type in types)
    conflict = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{model._meta.db_table}" ({", ".join(columns)}) SELECT * FROM unnest({unnest}){conflict}',
            arrays,
        )
