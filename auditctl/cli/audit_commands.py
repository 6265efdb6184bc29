"""install, uninstall and status: the triggers of the audited tables."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import psycopg
import typer

from .. import render
from ..audit import install as installer
from ..audit.catalog import list_tables, tables_in_schemas
from ..audit.config import load_audit_settings
from ..audit.ddl import AutoAuditPolicy
from ..audit.roles import app_role_problems, grant_app, grant_viewer, require_not_log_owner, require_role
from ..audit.rules import Rule, RuleRequest
from ..audit.retention import parse_keep
from ..audit.schema import DEFAULT_SCHEMA, not_installed_error
from ..audit.status import collect_status
from ..config import find_config
from ..db import connect
from ..errors import InvalidArgumentError, StatusProblemsError
from ..i18n import _, ngettext
from ..sqltext import quote_ident
from .app import app
from .options import ConfigOption, DsnOption, SchemaOption, require_value, typed_flags

TablesArgument = Annotated[list[str] | None, typer.Argument(
    metavar="TABLE", help=_("Tables as TABLE or SCHEMA.TABLE, written as they are named in the database."),
    show_default=False)]
LockTimeoutOption = Annotated[float, typer.Option(
    "--lock-timeout", min=0.1, metavar="SECONDS",
    help=_("How long to wait for each table's lock before giving up, in seconds."))]


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


@app.command(help=_("Install or upgrade the audit schema and the triggers of the given tables. Without TABLE and "
                    "--all, audits the tables that schemas and exclude in [audit] of the config file choose. "
                    "Column rules in [audit.tables] apply too; the flags below override the file."))
def install(
    tables: TablesArgument = None,
    all_tables: Annotated[bool, typer.Option("--all", help=_(
        "Audit every ordinary and partitioned table outside the system schemas."))] = False,
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", metavar="TABLE", help=_("Leave this table out; may be repeated."))] = None,
    exclude_column: Annotated[list[str] | None, typer.Option(
        "--exclude-column", metavar="TABLE.COLUMN",
        help=_("Never store this column's values; an UPDATE of only such columns records nothing."))] = None,
    mask_column: Annotated[list[str] | None, typer.Option(
        "--mask-column", metavar="TABLE.COLUMN",
        help=_("Record that this column changed but store a fixed marker instead of its values."))] = None,
    hash_column: Annotated[list[str] | None, typer.Option(
        "--hash-column", metavar="TABLE.COLUMN",
        help=_("Store this column's values as a keyed hash (HMAC-SHA256), so equal values can be matched."))] = None,
    keep_column: Annotated[list[str] | None, typer.Option(
        "--keep-column", metavar="TABLE.COLUMN",
        help=_("Store this column's values as they are, even if its name looks like a secret."))] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=_("Print the SQL instead of running it."))] = False,
    lock_timeout: LockTimeoutOption = 10.0,
    auto_audit: Annotated[bool | None, typer.Option(
        "--auto-audit/--no-auto-audit",
        help=_("Audit tables created later as soon as they are created (needs a superuser), or stop doing so. "
               "Default: auto_audit in [audit] of the config file, else kept from the last install."))] = None,
    auto_schema: Annotated[list[str] | None, typer.Option(
        "--auto-schema", metavar="SCHEMA",
        help=_("Schema whose new tables --auto-audit covers; may be repeated. "
               "Default: schemas in [audit] of the config file, else public."))] = None,
    auto_exclude: Annotated[list[str] | None, typer.Option(
        "--auto-exclude", metavar="PATTERN",
        help=_("LIKE pattern of new table names that --auto-audit leaves out, such as 'tmp_%'; may be repeated. "
               "Default: exclude in [audit] of the config file."))
    ] = None,
    max_value_bytes: Annotated[int | None, typer.Option(
        "--max-value-bytes", metavar="BYTES",
        help=_("Store text longer than this many bytes as its size and SHA-256, as bytea values always are; "
               "0 keeps every text value whole. Default: max_value_bytes in [audit] of the config file, "
               "else what the last install stored, else 8192."))] = None,
    enable_always: Annotated[bool | None, typer.Option(
        "--enable-always/--no-enable-always",
        help=_("Make the audit triggers ENABLE ALWAYS, so that sessions with session_replication_role = replica "
               "are recorded too; a logical replication subscriber whose tables are audited then also records "
               "the changes it applies. Applies to every audited table, and is kept from the last install "
               "when not given."))] = None,
    app_role: Annotated[str | None, typer.Option(
        "--app-role", metavar="ROLE",
        help=_("Let this existing application role write audited tables and call log_event(), "
               "with no direct access to the log (config: app_role)."))] = None,
    viewer_role: Annotated[str | None, typer.Option(
        "--viewer-role", metavar="ROLE",
        help=_("Also let this existing role read the audit log (for `auditctl serve`) without changing it "
               "(config: viewer_role)."))] = None,
    config: ConfigOption = None,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
) -> None:
    require_value("--app-role", app_role, _("give the name of an existing role, or leave --app-role out"))
    require_value("--viewer-role", viewer_role, _("give the name of an existing role, or leave --viewer-role out"))
    for name in auto_schema or []:
        require_value("--auto-schema", name, _("give the name of a schema, such as public, or leave --auto-schema out"))
    for pattern in auto_exclude or []:
        require_value("--auto-exclude", pattern, _("give a LIKE pattern such as 'tmp_%', or leave --auto-exclude out"))
    settings = load_audit_settings(find_config(config), typed_flags(
        auto_audit=auto_audit, max_value_bytes=max_value_bytes, app_role=app_role, viewer_role=viewer_role))
    if (auto_schema or auto_exclude) and settings.auto_audit is not True:
        raise InvalidArgumentError(_("--auto-schema and --auto-exclude choose the new tables that --auto-audit "
                                     "audits, and auditing new tables is not turned on: add --auto-audit, or leave "
                                     "them out."))
    # Flag rules come last, so that they replace the file's rule for the same column.
    column_rules = [*settings.column_rules, *_flag_rules(exclude_column, mask_column, hash_column, keep_column)]
    policy = settings.auto_audit_policy(tuple(auto_schema or ()), tuple(auto_exclude or ()))
    chosen_by_config = not tables and not all_tables and bool(settings.schemas)
    schema_only = (not tables and not all_tables and not chosen_by_config and not dry_run and not settings.viewer_role
                   and not settings.app_role and settings.auto_audit is None and enable_always is None)
    with connect(dsn) as connection:
        if schema_only and not _audits_tables(connection, schema):
            # Installing only the schema is allowed, but the user should know no table is audited yet. Where
            # tables are audited, install without tables is the upgrade that the README describes.
            render.console.print(_("No tables given: installing the audit schema only. "
                                   "Name tables or use --all to audit them."))
        # A dry run checks the roles and schemas too, so that it fails where the real run would.
        for role in (settings.viewer_role, settings.app_role):
            if role:
                require_role(connection, role)
        if settings.app_role:
            require_not_log_owner(connection, schema, settings.app_role)
        _require_schemas(connection, auto_schema or [], "--auto-schema")
        if chosen_by_config or (isinstance(policy, AutoAuditPolicy) and not auto_schema):
            _require_schemas(connection, list(settings.schemas),
                             _("schemas in [audit] of {path}").format(path=settings.config_path))
        if chosen_by_config:
            tables = [quote_ident(t.schema, t.name) for t in
                      tables_in_schemas(list_tables(connection, schema), settings.schemas, settings.exclude)]
        total = len(list_tables(connection, schema)) if all_tables else len(tables or [])
        # A dry run installs nothing, so it shows no progress either.
        tracker = (render.no_progress() if dry_run
                   else render.progress(_("Installing triggers"), total, "installing triggers"))
        with tracker as advance:
            result = installer.install(connection, schema, tables or [], use_all=all_tables, exclude=exclude or [],
                                       column_rules=column_rules, auto_audit=policy,
                                       max_value_bytes=settings.max_value_bytes, enable_always=enable_always,
                                       dry_run=dry_run, lock_timeout_seconds=lock_timeout,
                                       # print_install() prints that warning in the user's language.
                                       warn_ddl_capture_off=False,
                                       progress=lambda label: advance(label, 1))
        grants = grant_viewer(connection, schema, settings.viewer_role, dry_run=dry_run) if settings.viewer_role else []
        app_statements = grant_app(connection, schema, settings.app_role, dry_run=dry_run) if settings.app_role else []
        app_problems = app_role_problems(connection, schema, settings.app_role) if settings.app_role else []
    render.print_install(result, settings.config_path)
    if settings.viewer_role:
        render.print_viewer_grants(settings.viewer_role, grants, dry_run)
    if settings.app_role:
        render.print_app_grants(settings.app_role, app_statements, app_problems, dry_run)


def _audits_tables(connection: psycopg.Connection, schema: str) -> bool:
    """Tell whether the audit schema lists at least one audited table that this role may see.

    The catalog is read first, since looking a name up in a schema without
    USAGE on it fails; install then reports that itself.
    """
    readable = connection.execute(
        """SELECT pg_catalog.has_schema_privilege(n.oid, 'USAGE') AND pg_catalog.has_table_privilege(c.oid, 'SELECT')
           FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = 'audited_tables'""", (schema,)).fetchone()
    if not readable or not readable[0]:
        return False
    registry = quote_ident(schema, "audited_tables")
    return connection.execute(f"SELECT EXISTS (SELECT FROM {registry})").fetchone()[0]


def _require_schemas(connection: psycopg.Connection, names: list[str], source: str) -> None:
    """Raise InvalidArgumentError for the first of ``names`` that is no schema of the database."""
    missing = connection.execute(
        """SELECT name FROM pg_catalog.unnest(%s::text[]) WITH ORDINALITY AS given(name, position)
           WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = given.name)
           ORDER BY position LIMIT 1""", (names,)).fetchone()
    if missing:
        raise InvalidArgumentError(
            _("Schema {schema!r} of {source} does not exist in this database; correct the name, "
              "or create the schema first.").format(schema=missing[0], source=source))


def _flag_rules(exclude_column: list[str] | None, mask_column: list[str] | None, hash_column: list[str] | None,
                keep_column: list[str] | None) -> list[RuleRequest]:
    """Turn the column rule flags into rule requests that name their flag."""
    flags = (("--exclude-column", Rule.EXCLUDE, exclude_column), ("--mask-column", Rule.MASK, mask_column),
             ("--hash-column", Rule.HASH, hash_column), ("--keep-column", Rule.KEEP, keep_column))
    return [RuleRequest(reference, rule, flag) for flag, rule, references in flags for reference in references or []]


@app.command(help=_("Remove audit triggers; the log is kept unless --drop-data is given."))
def uninstall(
    tables: TablesArgument = None,
    all_tables: Annotated[bool, typer.Option("--all", help=_("Remove the triggers of every audited table."))] = False,
    drop_data: Annotated[bool, typer.Option("--drop-data", help=_(
        "Also drop the audit schema with the whole log; needs --all."))] = False,
    lock_timeout: LockTimeoutOption = 10.0,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
) -> None:
    with connect(dsn) as connection:
        result = installer.uninstall(connection, schema, tables or [], use_all=all_tables, drop_data=drop_data,
                                     lock_timeout_seconds=lock_timeout)
    render.print_uninstall(result, schema)


@app.command(help=_("Show which tables are audited, which triggers are outdated, and the size of the log. "
                    "Before install, lists the tables and exits with status 1. Exits with status 3 when an audited "
                    "table's changes are not recorded, or recorded in clear against a rule."))
def status(
    output_format: Annotated[OutputFormat, typer.Option("--format", help=_("Output format."))] = OutputFormat.table,
    keep: Annotated[str, typer.Option(
        "--keep", metavar="AGE", help=_("Keep window to show the next rotate for, such as 180d or 26w."))] = "180d",
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
) -> None:
    keep_for = parse_keep(keep)
    with connect(dsn) as connection:
        report = collect_status(connection, schema, keep=keep_for)
    if output_format is OutputFormat.json:
        render.print_json(render.status_to_json(report))
    else:
        render.print_status(report)
    if not report.installed:
        raise not_installed_error(schema)
    problems = report.needs_attention
    if not problems:
        return
    if output_format is OutputFormat.json:
        # The JSON output contains no advice, only the list of tables.
        message = ngettext("{count} audited table needs attention; see needs_attention in the JSON output.",
                           "{count} audited tables need attention; see needs_attention in the JSON output.",
                           len(problems))
    else:
        message = ngettext("{count} audited table needs attention; see the advice above.",
                           "{count} audited tables need attention; see the advice above.", len(problems))
    raise StatusProblemsError(message.format(count=len(problems)))
