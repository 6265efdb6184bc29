"""Recording backup runs in the audit log of the database, when auditing is installed there."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from ..audit.events import log_event
from ..audit.schema import DEFAULT_SCHEMA
from ..db import connect, first_line
from ..errors import AuditctlError, NotInstalledError

logger = logging.getLogger(__name__)

BACKUP_CREATE = "BACKUP_CREATE"
BACKUP_FAILED = "BACKUP_FAILED"
BACKUP_RESTORE = "BACKUP_RESTORE"


def record_backup_event(dsn: str | None, action: str, details: dict[str, Any],
                        schema: str = DEFAULT_SCHEMA, dsn_origin: str = "--dsn",
                        backup_error: str | None = None) -> int | None:
    """Write one backup event through ``log_event``; return its id, or None when it was not recorded.

    A database without the audit schema, or one that cannot be reached (a
    failed backup often means exactly that), is logged and skipped: the event
    is a record of the run, never a reason to fail it. When recording fails
    with the same error as the backup (``backup_error``), which the CLI prints
    anyway, the warning does not repeat it.
    """
    try:
        with connect(dsn, option_origin=dsn_origin) as connection:
            event_id = log_event(connection, schema, action, user_id=None, entity_type=None, details=details)
    except NotInstalledError:
        logger.debug("audit schema %s not installed; %s not recorded", schema, action)
        return None
    except (AuditctlError, psycopg.Error) as exc:
        reason = first_line(str(exc))
        if backup_error is not None and reason == first_line(backup_error):
            logger.warning("could not record %s in the audit log either, because of the same error", action)
        else:
            logger.warning("could not record %s in the audit log: %s", action, reason)
        return None
    logger.info("recorded %s as audit event %d", action, event_id)
    return event_id
