"""rotate, maintain and cron maintain: keeping the log's partitions in shape."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from .. import render
from ..audit.archive import ArchiveFormat
from ..audit.cron import DEFAULT_SCHEDULE, cron_line, cron_variable_warnings, crontab_dsn, install_line
from ..audit.destinations import Destination, LocalDestination, S3Destination
from ..audit.outdated import regenerate_outdated_triggers
from ..audit.partitions import Interval, check_ahead, maintain as maintain_partitions, run_pg_partman
from ..audit.retention import parse_keep, rotate as rotate_partitions
from ..audit.schema import DEFAULT_SCHEMA
from ..db import connect
from ..errors import InvalidArgumentError
from ..i18n import _
from .app import app
from .cron_commands import cron_app
from .options import CrontabFileOption, DsnOption, PrintOption, SchemaOption, file_parser, folder_parser, is_quiet

AheadOption = Annotated[int, typer.Option(
    "--ahead", metavar="N", help=_("Partitions to keep ready after the current one."))]
IntervalOption = Annotated[Interval, typer.Option(
    "--interval", help=_("Length of each new partition."))]



def _destination(ctx: typer.Context, archive_dir: Path | None, archive_s3: str | None,
                 s3_endpoint_url: str | None) -> Destination:
    if (archive_dir is None) == (archive_s3 is None):
        raise InvalidArgumentError(_("Give exactly one of --archive-dir DIR or --archive-s3 URL."))
    if archive_dir is not None:
        return LocalDestination(archive_dir)
    # typer carries a copy of click, so the source is compared by name rather than with click's enum.
    source = ctx.get_parameter_source("s3_endpoint_url")
    from_variable = source is not None and source.name == "ENVIRONMENT"
    return S3Destination(archive_s3, endpoint_url=s3_endpoint_url,
                         endpoint_origin="AWS_ENDPOINT_URL" if from_variable else "--s3-endpoint-url")


@app.command(help=_("Archive partitions older than the keep window, verify each archive, then drop them."))
def rotate(
    ctx: typer.Context,
    keep: Annotated[str, typer.Option("--keep", metavar="AGE",
                                      help=_("Keep events of this age, such as 180d or 26w."))],
    archive_dir: Annotated[Path | None, typer.Option(
        "--archive-dir", metavar="DIR", help=_("Folder to write the archives to."),
        parser=folder_parser("--archive-dir"))] = None,
    archive_s3: Annotated[str | None, typer.Option(
        "--archive-s3", metavar="URL", help=_("S3 location to upload the archives to, s3://BUCKET/PREFIX."))] = None,
    s3_endpoint_url: Annotated[str | None, typer.Option(
        "--s3-endpoint-url", metavar="URL", envvar="AWS_ENDPOINT_URL",
        help=_("Endpoint of an S3-compatible store; AWS when not given."))] = None,
    archive_format: Annotated[ArchiveFormat, typer.Option(
        "--format", metavar="FORMAT",
        help=_("Archive file format: csv.gz, jsonl.zst or parquet."))] = ArchiveFormat.csv_gz,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help=_("Check the archive destination and list what would be archived and dropped; "
                           "change nothing."))] = False,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
) -> None:
    keep_for = parse_keep(keep)
    destination = _destination(ctx, archive_dir, archive_s3, s3_endpoint_url)
    with connect(dsn) as connection:
        result = rotate_partitions(connection, schema, keep_for, destination, archive_format, dry_run=dry_run)
    render.print_rotation(result)
    if result.failed:
        raise typer.Exit(1)


@app.command(help=_("Create partitions ahead, move rows out of the default partition, and generate outdated audit "
                    "triggers again; run it after migrations and from cron."))
def maintain(
    ctx: typer.Context,
    ahead: AheadOption = 3,
    interval: IntervalOption = Interval.monthly,
    pg_partman: Annotated[bool, typer.Option(
        "--pg-partman", help=_("Run pg_partman's maintenance instead, where pg_partman is installed and manages "
                               "the events table."))] = False,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
) -> None:
    quiet = is_quiet(ctx)
    with connect(dsn) as connection:
        if pg_partman:
            partman_schema = run_pg_partman(connection, schema)
            if not quiet:
                render.print_pg_partman(partman_schema)
        else:
            result = maintain_partitions(connection, schema, ahead=ahead, interval=interval)
            render.print_maintenance(result, quiet=quiet)
        regenerated = regenerate_outdated_triggers(connection, schema)
    render.print_regenerated(regenerated, quiet=quiet)
    if regenerated.failed or regenerated.handover_failed:
        raise typer.Exit(1)


@cron_app.command("maintain", help=_("Add a crontab line that runs `auditctl maintain`, or print it with --print; "
                                     "replaces an earlier one."))
def cron_install(
    schedule: Annotated[str, typer.Option(
        "--schedule", metavar="CRON", help=_("Five crontab fields, such as '17 3 * * *' (03:17 every day)."))]
        = DEFAULT_SCHEDULE,
    crontab_file: CrontabFileOption = None,
    log_file: Annotated[Path, typer.Option(
        "--log-file", metavar="FILE", help=_("File that collects the job's output."),
        parser=file_parser("--log-file", reject_folder=False))] = Path("auditctl-maintain.log"),
    ahead: AheadOption = 3,
    interval: IntervalOption = Interval.monthly,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
    print_only: PrintOption = False,
) -> None:
    # The line would fail every night on a value that maintain refuses, so it is checked before it is written.
    check_ahead(ahead)
    line_dsn = crontab_dsn(dsn)
    arguments = ["--ahead", str(ahead), "--interval", interval.value, "--schema", schema, "--dsn", line_dsn]
    line = cron_line(schedule, arguments, log_file.resolve(), os.environ)
    warnings = cron_variable_warnings(line_dsn, os.environ)
    if print_only:
        render.print_line(line)
        render.print_warnings(warnings)
        return
    result = install_line(line, crontab_file)
    render.print_cron(result)
    render.print_warnings(warnings)
