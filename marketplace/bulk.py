"""Set-based writes the ORM has no single statement for.

`update_by_pk` sets one column of many rows, each row to its own value. Django's `bulk_update`
builds a CASE with one branch per row, which PostgreSQL evaluates for every row (quadratic) and
Django takes long to compile; on PostgreSQL this is one `UPDATE ... FROM unnest(ids, values)`.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Field, ForeignKey, Model


def update_by_pk(model: type[Model], field_name: str, values: dict[int, Any]) -> int:
    """Set `field_name` of each row whose primary key is in `values` to its value, in one statement;
    returns how many rows were updated."""
    if not values:
        return 0
    field = model._meta.get_field(field_name)
    if not isinstance(field, Field):
        raise TypeError(f"{field_name} is not a column of {model.__name__}")
    if connection.vendor != "postgresql":
        rows = [model(pk=pk, **{field.attname: value}) for pk, value in values.items()]
        return model._default_manager.bulk_update(rows, [field_name])
    db_type = field.rel_db_type(connection) if isinstance(field, ForeignKey) else field.db_type(connection)
    pk = model._meta.pk
    assert pk is not None  # every concrete model has one
    prepared = [field.get_db_prep_value(value, connection) for value in values.values()]
    table, column, pk_column, pk_type = model._meta.db_table, field.column, pk.column, pk.db_type(connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{table}" AS t SET "{column}" = v.value '
            f"FROM unnest(%s::{pk_type}[], %s::{db_type}[]) AS v(id, value) "
            f'WHERE t."{pk_column}" = v.id',
            [list(values), prepared],
        )
        return int(cursor.rowcount)


def insert_rows(model: type[Model], rows: list[dict[str, Any]], *, ignore_conflicts: bool = False) -> None:
    """Insert many rows given as {field name: value} (every row the same fields), in one statement:
    on PostgreSQL `INSERT ... SELECT * FROM unnest(<one array per column>)`, without building a model
    object per row (which costs more than the insert at market size); elsewhere `bulk_create`."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create([model(**row) for row in rows], ignore_conflicts=ignore_conflicts)
        return
    fields = [model._meta.get_field(name) for name in rows[0]]
    columns, arrays, types = [], [], []
    for name, field in zip(rows[0], fields, strict=True):
        if not isinstance(field, Field):
            raise TypeError(f"{name} is not a column of {model.__name__}")
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
