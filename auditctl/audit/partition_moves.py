"""Rows that an UPDATE moved to another partition, which the log records as two events.

PostgreSQL runs an UPDATE that changes a row's partition key so that the
row leaves its partition as a DELETE and enters the new one as an INSERT,
and auditctl's row triggers record both, each with its partition in
``details``. Reverting only one of them would re-insert the old row next to
the moved one, or delete the moved row without bringing the old one back.

A partitioned table's primary key must contain every partition key column,
so the key columns that are not partition key columns name the row on both
sides of the move. The other half is the event of the opposite action that
the same statement wrote (same transaction and statement time) on the same
table, in another partition, whose key has the same values in those columns.
"""

from __future__ import annotations

import json

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from ..errors import RevertRefusedError
from ..i18n import _
from .catalog import Table
from .query import SELECT_EVENTS, Event

_OTHER_ACTION = {"DELETE": "INSERT", "INSERT": "DELETE"}

# Partition key columns of every partitioned table in the tree, by name,
# since a partition may number its columns differently from the root.
# Expression keys (attnum 0) have no column and no primary key either.
_PARTITION_KEY_COLUMNS = """
SELECT DISTINCT a.attname
FROM pg_catalog.pg_partition_tree(%s::pg_catalog.oid::pg_catalog.regclass) AS t
JOIN pg_catalog.pg_partitioned_table AS p ON p.partrelid = t.relid
CROSS JOIN LATERAL pg_catalog.unnest(p.partattrs::pg_catalog.int2[]) AS k(attnum)
JOIN pg_catalog.pg_attribute AS a ON a.attrelid = p.partrelid AND a.attnum = k.attnum
"""


def reject_half_of_move(connection: psycopg.Connection, schema: str, event: Event, table: Table) -> None:
    """Raise RevertRefusedError when the event is one half of a row moved to another partition."""
    other = find_other_half(connection, schema, event, table)
    if other is None:
        return
    source, target = (event, other) if event.action == "DELETE" else (other, event)
    raise RevertRefusedError(
        _("Event {id} is half of an UPDATE that moved a row of {table} from partition {source} to {target}, and "
          "event {other} is the other half. Reverting one half alone would leave the row twice or not at all. "
          "Revert the whole transaction with `auditctl revert --transaction {transaction}`.")
        .format(id=event.id, table=event.entity_type, source=source.details["partition"],
                target=target.details["partition"], other=other.id, transaction=event.transaction_id))


def find_other_half(connection: psycopg.Connection, schema: str, event: Event, table: Table) -> Event | None:
    """Return the other event of a row move to another partition that ``event`` is half of, or None.

    NOTE: a table whose primary key has only partition key columns has
    nothing that names the row on both sides, so its moves are not found.
    Neither are those of tables without a primary key.
    """
    partition = (event.details or {}).get("partition")
    if (event.action not in _OTHER_ACTION or partition is None or event.transaction_id is None
            or not table.partitioned or event.entity_id is None or len(table.key_columns) < 2):
        return None
    partition_keys = {row[0] for row in connection.execute(_PARTITION_KEY_COLUMNS, (table.oid,)).fetchall()}
    positions = [position for position, column in enumerate(table.key_columns) if column not in partition_keys]
    values = json.loads(event.entity_id)
    if not positions or not isinstance(values, list) or len(values) != len(table.key_columns):
        return None

    # One statement wrote both halves, so they share its statement_timestamp(),
    # which also lets the time index and partition pruning find them.
    # Only a composite key is stored as a JSON array, and other texts must not reach the cast.
    element = "(CASE WHEN entity_id LIKE '[%%' THEN entity_id::jsonb END -> {position}) = %s"
    same_row = sql.SQL(" AND ").join(sql.SQL(element).format(position=sql.Literal(position))
                                     for position in positions)
    where = sql.SQL(
        "WHERE occurred_at = %s AND transaction_id = %s AND entity_type = %s AND action = %s AND id <> %s "
        "AND details ->> 'partition' <> %s AND {same_row} ORDER BY id LIMIT 1"
    ).format(same_row=same_row)
    statement = sql.SQL(SELECT_EVENTS).format(audit=sql.Identifier(schema), where=where)
    params = (event.occurred_at, event.transaction_id, event.entity_type, _OTHER_ACTION[event.action], event.id,
              partition, *(Jsonb(values[position]) for position in positions))
    with connection.cursor(row_factory=class_row(Event)) as cursor:
        return cursor.execute(statement, params).fetchone()
