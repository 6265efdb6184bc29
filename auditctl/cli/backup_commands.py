"""backup, backup list, backup verify and backup restore."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .. import render
from ..backup import events
from ..backup.config import BackupSettings, check_dump_options, load_settings
from ..backup.encryption import Decryption
from ..backup.interruption import SignalGuard
from ..backup.job import check_secrets, run_job
from ..backup.manifest import find_backups
from ..backup.restore import restore_backup
from ..backup.verify import require_file, verify_backup
from ..config import find_config
from ..errors import DeliveryError, InvalidArgumentError
from ..i18n import _
from .app import app
from .options import ConfigOption, DirOption, DsnOption, typed_flags

backup_app = typer.Typer(
    help=_("Dump the database with pg_dump into a verified, checksummed file; rotate, encrypt and mail it."),
    invoke_without_command=True, no_args_is_help=False, rich_markup_mode="rich")
app.add_typer(backup_app, name="backup")

IdentityOption = Annotated[Path | None, typer.Option(
    "--identity", metavar="FILE",
    help=_("age identity file (AGE-SECRET-KEY-1…) to decrypt encrypted backups (config: identity_file)."))]
PassphraseOption = Annotated[Path | None, typer.Option(
    "--passphrase-file", metavar="FILE",
    help=_("File (mode 0600) holding the age passphrase to encrypt or decrypt with (config: passphrase_file)."))]
PgBindirOption = Annotated[Path | None, typer.Option(
    "--pg-bindir", metavar="FOLDER",
    help=_("Use pg_dump, pg_restore and pg_dumpall from this folder only (config: pg_bindir)."))]


def _settings(config: Path | None, **flags: Any) -> BackupSettings:
    return load_settings(find_config(config), typed_flags(**flags))


def _decryption(settings: BackupSettings) -> Decryption:
    """Return the identity and passphrase files; Decryption picks the one that matches each backup's age header."""
    return Decryption(identity_file=settings.identity_file, passphrase_file=settings.passphrase_file)


@backup_app.callback()
def backup(
    ctx: typer.Context,
    config: ConfigOption = None,
    folder: DirOption = None,
    dsn: DsnOption = None,
    dump_format: Annotated[str | None, typer.Option(
        "--format", metavar="FORMAT", help=_("pg_dump format: custom (one file, default) or directory."))] = None,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", min=1, help=_("Parallel pg_dump jobs; needs --format directory."))] = None,
    compress: Annotated[int | None, typer.Option(
        "--compress", min=0, max=9, help=_("pg_dump compression level, 0 (none) to 9."))] = None,
    with_globals: Annotated[bool | None, typer.Option(
        "--globals/--no-globals", help=_("Also dump roles and tablespaces with pg_dumpall --globals-only."),
        show_default=False)] = None,
    pg_bindir: PgBindirOption = None,
    recipient: Annotated[list[str] | None, typer.Option(
        "--recipient", metavar="KEY", help=_("Encrypt to this age public key (age1…); may be repeated."))] = None,
    recipients_file: Annotated[Path | None, typer.Option(
        "--recipients-file", metavar="FILE", help=_("Encrypt to the age public keys listed in FILE."))] = None,
    passphrase_file: PassphraseOption = None,
    keep_last: Annotated[int | None, typer.Option("--keep-last", min=0, help=_(
        "Keep the newest N backups of this database."))] = None,
    keep_daily: Annotated[int | None, typer.Option("--keep-daily", min=0, help=_(
        "Keep the newest backup of each of the last N days."))] = None,
    keep_weekly: Annotated[int | None, typer.Option("--keep-weekly", min=0, help=_(
        "Keep the newest backup of each of the last N weeks."))] = None,
    keep_monthly: Annotated[int | None, typer.Option("--keep-monthly", min=0, help=_(
        "Keep the newest backup of each of the last N months."))] = None,
    from_url: Annotated[str | None, typer.Option(
        "--from-url", metavar="URL", help=_("Save the JSON that this backup endpoint returns instead of running "
                                            "pg_dump."))] = None,
    header_env: Annotated[str | None, typer.Option(
        "--header-env", metavar="NAME", help=_("Environment variable holding a header line for --from-url, such as "
                                               "'Authorization: Bearer TOKEN'."))] = None,
    header_file: Annotated[Path | None, typer.Option(
        "--header-file", metavar="FILE", help=_("File (mode 0600) holding the header line for --from-url."))] = None,
    mail_to: Annotated[list[str] | None, typer.Option(
        "--mail-to", metavar="ADDRESS", help=_("Send the report to this address instead of [mail] to; "
                                               "may be repeated."))] = None,
) -> None:
    """Run a backup now (the command cron runs), or one of the subcommands below."""
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings(
        config, folder=folder, dsn=dsn, dump_format=dump_format, jobs=jobs, compress=compress,
        with_globals=with_globals, pg_bindir=pg_bindir, recipients=tuple(recipient) if recipient else None,
        recipients_file=recipients_file, passphrase_file=passphrase_file, keep_last=keep_last, keep_daily=keep_daily, keep_weekly=keep_weekly,
        keep_monthly=keep_monthly, from_url=from_url, header_env=header_env, header_file=header_file,
        **{"mail.to": tuple(mail_to) if mail_to else None})
    # From here on a signal makes the run end as interrupted, with its audit event and mail.
    with SignalGuard() as guard:
        check_dump_options(settings)
        check_secrets(settings)
        with render.byte_progress(_("Writing backup")) as advance:
            report = run_job(settings, advance, guard)
    render.print_backup_report(report)
    if report.error is not None:
        raise report.error
    if report.delivery_errors:
        raise DeliveryError(_("The backup {path} is kept, but delivery failed: {error}").format(
            path=report.result.path, error="; ".join(report.delivery_errors)))


@backup_app.command("list", help=_("List the backups that auditctl made in the backup folder."))
def list_backups(
    config: ConfigOption = None,
    folder: DirOption = None,
    database: Annotated[str | None, typer.Option("--database", metavar="NAME",
                                                 help=_("Only backups of this database."))] = None,
) -> None:
    settings = _settings(config, folder=folder)
    if settings.folder.exists() and not settings.folder.is_dir():
        raise InvalidArgumentError(
            _("Backup folder {path} is not a folder; check --dir or the dir setting.").format(path=settings.folder))
    if not settings.folder.is_dir():
        raise InvalidArgumentError(
            _("Backup folder {path} does not exist; check --dir or the dir setting.").format(path=settings.folder))
    render.print_backup_list(find_backups(settings.folder, database), database)


@backup_app.command(help=_("Check a backup: checksum, decryption and pg_restore --list."))
def verify(
    file: Annotated[Path, typer.Argument(metavar="FILE", help=_("Backup file or directory-format folder."))],
    config: ConfigOption = None,
    identity: IdentityOption = None,
    passphrase_file: PassphraseOption = None,
    pg_bindir: PgBindirOption = None,
) -> None:
    require_file(file)
    settings = _settings(config, identity_file=identity, passphrase_file=passphrase_file, pg_bindir=pg_bindir)
    render.print_verify_report(verify_backup(file, _decryption(settings), settings.pg_bindir))


@backup_app.command(help=_("Restore a backup into an existing database in one transaction; the database must be "
                            "empty unless --clean is given."))
def restore(
    file: Annotated[Path, typer.Argument(metavar="FILE", help=_("Backup file or directory-format folder."))],
    target_dsn: Annotated[str | None, typer.Option(
        "--target-dsn", metavar="DSN", envvar="AUDITCTL_TARGET_DSN",
        help=_("Existing database to restore into (create it first with createdb); keep its password in "
               "PGPASSWORD or ~/.pgpass."))] = None,
    clean: Annotated[bool, typer.Option("--clean", help=_(
        "Drop the backup's objects in the target before re-creating them."))] = False,
    config: ConfigOption = None,
    identity: IdentityOption = None,
    passphrase_file: PassphraseOption = None,
    pg_bindir: PgBindirOption = None,
) -> None:
    if not target_dsn:
        raise InvalidArgumentError(_("Missing --target-dsn: name the database to restore into."))
    require_file(file)
    settings = _settings(config, identity_file=identity, passphrase_file=passphrase_file, pg_bindir=pg_bindir)
    result = restore_backup(file, target_dsn, clean=clean, decryption=_decryption(settings),
                            pg_bindir=settings.pg_bindir)
    events.record_backup_event(target_dsn, events.BACKUP_RESTORE,
                               {"file": file.name, "sha256": result.manifest.sha256 or None,
                                "source_database": result.manifest.database, "clean": clean},
                               settings.audit_schema, "--target-dsn")
    render.print_restore_result(result)
