"""auditctl: audit trail and backups for PostgreSQL."""

__version__ = "0.1.0"
