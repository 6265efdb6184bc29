"""When the audit triggers fire, and who can skip them with session_replication_role.

PostgreSQL fires a trigger according to ``pg_trigger.tgenabled`` and the
session's ``session_replication_role``. A trigger created the usual way
(ENABLE, stored as 'O') does not fire in a session that set
``session_replication_role = replica``, so a role allowed to set that
parameter can change audited tables without leaving events. ENABLE ALWAYS
('A') closes that gap. Its cost: a logical replication subscriber applies
changes under the replica role, so a subscriber whose tables are audited
with ALWAYS triggers records the replicated rows as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import psycopg

from ..sqltext import quote_ident, quote_literal
from .schema import read_setting

ENABLE_ALWAYS_SETTING = "enable_always"


class TriggerFiring(StrEnum):
    """When a table's audit triggers fire; the weakest of its triggers decides."""

    ALWAYS = "always"
    ORIGIN = "origin"
    REPLICA = "replica"
    DISABLED = "disabled"


_FIRING_BY_CODE = {"A": TriggerFiring.ALWAYS, "O": TriggerFiring.ORIGIN,
                   "R": TriggerFiring.REPLICA, "D": TriggerFiring.DISABLED}
# From the weakest to the strongest: a table is only as well audited as its weakest trigger.
_FIRING_ORDER = (TriggerFiring.DISABLED, TriggerFiring.REPLICA, TriggerFiring.ORIGIN, TriggerFiring.ALWAYS)


def table_firing(codes: set[str] | frozenset[str]) -> TriggerFiring:
    """Combine the ``tgenabled`` codes of one table's audit triggers into one state."""
    states = {_FIRING_BY_CODE[code] for code in codes}
    return next(state for state in _FIRING_ORDER if state in states)


def firing_code(always: bool) -> str:
    """Return the ``tgenabled`` code that install gives the audit triggers."""
    return "A" if always else "O"


def enable_statement(table: str, trigger: str, always: bool) -> str:
    """Return the ALTER TABLE that enables one trigger; ``table`` is already quoted."""
    mode = " ALWAYS" if always else ""
    return f"ALTER TABLE {table} ENABLE{mode} TRIGGER {quote_ident(trigger)};"


def load_enable_always(connection: psycopg.Connection, schema: str) -> bool:
    """Read whether install chose ENABLE ALWAYS; False before it was ever chosen."""
    return read_setting(connection, schema, ENABLE_ALWAYS_SETTING) is True


def enable_always_statement(schema: str, always: bool) -> str:
    """Return the statement that stores the choice, so that later installs and auto-audited tables keep it."""
    value = "true" if always else "false"
    return (f"INSERT INTO {quote_ident(schema)}.settings (name, value) "
            f"VALUES ({quote_literal(ENABLE_ALWAYS_SETTING)}, '{value}'::jsonb)\n"
            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = pg_catalog.now();")


class BypassReason(StrEnum):
    """Reason a role may set session_replication_role."""

    SUPERUSER = "superuser"
    SUPERUSER_MEMBER = "superuser_member"
    PARAMETER_GRANT = "parameter_grant"


@dataclass(frozen=True)
class ReplicaRole:
    """A role that may set session_replication_role, with the reason and the superuser it can become."""

    name: str
    reason: BypassReason
    superuser: str | None = None


# Three kinds of role may set the parameter. Superusers may. So may roles
# that can SET ROLE to a superuser, which is pg_has_role 'SET' from
# PostgreSQL 16 and plain membership before. From PostgreSQL 15, so may roles
# granted SET on the parameter, directly or through a role they inherit.
_REPLICA_ROLES_QUERY = """
SELECT r.rolname, r.rolsuper,
       (SELECT s.rolname FROM pg_catalog.pg_roles AS s
         WHERE s.rolsuper AND s.oid <> r.oid AND pg_catalog.pg_has_role(r.oid, s.oid, %(membership)s)
         ORDER BY s.rolname LIMIT 1) AS superuser,
       {granted} AS granted
FROM pg_catalog.pg_roles AS r
ORDER BY r.rolname
"""


def replica_roles(connection: psycopg.Connection) -> list[ReplicaRole]:
    """List the roles of the cluster that may set session_replication_role."""
    version = connection.info.server_version
    granted = ("pg_catalog.has_parameter_privilege(r.oid, 'session_replication_role', 'SET')"
               if version >= 150000 else "false")
    membership = "SET" if version >= 160000 else "MEMBER"
    roles = []
    for name, is_superuser, superuser, is_granted in connection.execute(
            _REPLICA_ROLES_QUERY.format(granted=granted), {"membership": membership}).fetchall():
        if is_superuser:
            roles.append(ReplicaRole(name, BypassReason.SUPERUSER))
        elif is_granted:
            roles.append(ReplicaRole(name, BypassReason.PARAMETER_GRANT))
        elif superuser:
            roles.append(ReplicaRole(name, BypassReason.SUPERUSER_MEMBER, superuser))
    return roles
