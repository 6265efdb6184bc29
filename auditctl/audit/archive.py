"""Archive files of one partition: writing them and reading them back.

An archive is a data file (CSV with gzip, JSON Lines with zstd, or Parquet)
and a manifest beside it, ``NAME.manifest.json``. The manifest contains the
row count, the time range, the sum of the event ids and the SHA-256 of the
data file. Reading an
archive back recomputes all of these from the stored bytes. destinations.py
stores the files in a folder or a bucket.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import psycopg
from psycopg import sql

from .. import jsonvalues
from ..errors import AuditctlError
from ..i18n import _
from .query import EXPORT_COLUMNS

_BATCH_ROWS = 20000


class ArchiveFormat(StrEnum):
    """File format of an archive."""

    csv_gz = "csv.gz"
    jsonl_zst = "jsonl.zst"
    parquet = "parquet"


class ArchiveError(AuditctlError):
    """An archive could not be written, stored or verified."""


class ArchiveExistsError(ArchiveError):
    """The destination already has a file of that name, which auditctl never replaces."""


@dataclass
class Manifest:
    """Facts about one archived partition, written next to its data file."""

    partition: str
    format: str
    file: str
    rows: int
    id_sum: int
    first_event_at: str | None
    last_event_at: str | None
    range_from: str
    range_to: str
    sha256: str
    bytes: int
    created_at: str
    columns: tuple[str, ...] = EXPORT_COLUMNS


@dataclass
class Contents:
    """Row count, id sum and time range of an archive or a partition."""

    rows: int
    id_sum: int
    first_event_at: str | None
    last_event_at: str | None


# Text forms computed by the server, as in `export`: ISO 8601 times, JSON as text.
_ROWS = """SELECT id, pg_catalog.to_json(occurred_at) #>> '{{}}', user_id, host(ip_address), db_user, action,
                  entity_type, entity_id, old_values::text, new_values::text, details::text,
                  application_name, transaction_id
           FROM {table} ORDER BY occurred_at, id"""


def partition_contents(connection: psycopg.Connection, schema: str, partition: str) -> Contents:
    """Count the rows of a partition and sum their ids, to compare with its archive."""
    rows, id_sum, first, last = connection.execute(sql.SQL(
        "SELECT count(*), COALESCE(sum(id), 0), pg_catalog.to_json(min(occurred_at)) #>> '{{}}', "
        "pg_catalog.to_json(max(occurred_at)) #>> '{{}}' FROM {}").format(
            sql.Identifier(schema, partition))).fetchone()
    return Contents(rows, int(id_sum), first, last)


def write_archive(connection: psycopg.Connection, schema: str, partition: str, archive_format: ArchiveFormat,
                  path: Path) -> tuple[str, int]:
    """Write every row of ``partition`` to ``path`` in ``archive_format``; return its SHA-256 and size.

    Rows come through a server-side cursor in batches, so memory stays flat.
    The caller's transaction must be open, since named cursors live in one.
    """
    query = sql.SQL(_ROWS).format(table=sql.Identifier(schema, partition))
    if archive_format is ArchiveFormat.csv_gz:
        _copy_csv_gz(connection, query, path)
        return file_sha256(path), path.stat().st_size
    with connection.cursor(name=f"auditctl_archive_{partition}") as cursor:
        cursor.itersize = _BATCH_ROWS
        cursor.execute(query)
        if archive_format is ArchiveFormat.jsonl_zst:
            _write_jsonl_zst(cursor, path)
        else:
            _write_parquet(cursor, path)
    return file_sha256(path), path.stat().st_size


def _batches(cursor: psycopg.Cursor) -> Iterator[list[tuple]]:
    while rows := cursor.fetchmany(_BATCH_ROWS):
        yield rows


def _copy_csv_gz(connection: psycopg.Connection, query: sql.Composable, path: Path) -> None:
    """Write the rows as CSV straight from COPY, compressed at gzip level 6 (the gzip tool's default)."""
    block = bytearray()
    with gzip.open(path, "wb", compresslevel=6) as handle, connection.cursor() as cursor:
        handle.write((",".join(EXPORT_COLUMNS) + "\n").encode())
        with cursor.copy(sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(query)) as copy:
            for row in copy:
                block += row
                if len(block) >= 1 << 20:
                    handle.write(block)
                    block.clear()
        handle.write(block)


def _json_row(row: tuple) -> str:
    record = dict(zip(EXPORT_COLUMNS, row, strict=True))
    for key in ("old", "new", "details"):
        if record[key] is not None:
            record[key] = jsonvalues.loads(record[key])
    return jsonvalues.dumps(record, ensure_ascii=False)


def _write_jsonl_zst(cursor: psycopg.Cursor, path: Path) -> None:
    import zstandard

    with path.open("wb") as raw, zstandard.ZstdCompressor(level=3).stream_writer(raw) as compressed:
        for rows in _batches(cursor):
            compressed.write("".join(_json_row(row) + "\n" for row in rows).encode())


def parquet_schema():
    """Return the Arrow schema of Parquet exports and archives; JSON columns are JSON text."""
    import pyarrow as pa

    types = {"id": pa.int64(), "occurred_at": pa.timestamp("us", tz="UTC"), "transaction_id": pa.int64()}
    return pa.schema([(name, types.get(name, pa.string())) for name in EXPORT_COLUMNS])


def write_parquet_batches(batches: Iterator[list[tuple]], sink, on_batch=None) -> int:
    """Write rows in the order of EXPORT_COLUMNS to a Parquet file or stream; return the row count.

    ``occurred_at`` arrives as ISO 8601 text and is stored as a UTC timestamp.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    total = 0
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for rows in batches:
            columns = list(zip(*rows, strict=True))
            arrays = []
            for index, name in enumerate(EXPORT_COLUMNS):
                if name == "occurred_at":
                    arrays.append(_parse_times(columns[index]))
                else:
                    arrays.append(pa.array(columns[index], schema.field(name).type))
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
            total += len(rows)
            if on_batch:
                on_batch(len(rows))
    return total


def _parse_times(values: tuple[str, ...]):
    import pyarrow as pa

    return pa.array([datetime.fromisoformat(value) for value in values], pa.timestamp("us", tz="UTC"))


def _write_parquet(cursor: psycopg.Cursor, path: Path) -> None:
    write_parquet_batches(_batches(cursor), str(path))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_contents(path: Path, archive_format: ArchiveFormat) -> Contents:
    """Read an archive file back in full and count its rows, ids and time range.

    Raises ArchiveError when the file cannot be decoded.
    """
    rows = 0
    id_sum = 0
    first: str | None = None
    last: str | None = None
    try:
        for event_id, occurred_at in _read_ids_and_times(path, archive_format):
            rows += 1
            id_sum += event_id
            first = occurred_at if first is None else min(first, occurred_at)
            last = occurred_at if last is None else max(last, occurred_at)
    except (OSError, EOFError, ValueError, KeyError, csv.Error) as exc:
        raise ArchiveError(_("Archive {path} could not be read back: {error}").format(
            path=path, error=exc)) from exc
    except Exception as exc:  # zstandard and pyarrow raise their own error types
        raise ArchiveError(_("Archive {path} could not be read back: {error}").format(
            path=path, error=f"{type(exc).__name__}: {exc}")) from exc
    return Contents(rows, id_sum, first, last)


def _read_ids_and_times(path: Path, archive_format: ArchiveFormat) -> Iterator[tuple[int, str]]:
    if archive_format is ArchiveFormat.csv_gz:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            if next(reader) != list(EXPORT_COLUMNS):
                raise ValueError("unexpected CSV header")
            for record in reader:
                yield int(record[0]), record[1]
    elif archive_format is ArchiveFormat.jsonl_zst:
        import zstandard

        with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream:
            for line in io.TextIOWrapper(stream, encoding="utf-8"):
                record = jsonvalues.loads(line)
                yield int(record["id"]), record["occurred_at"]
    else:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(str(path))
        for batch in parquet.iter_batches(columns=["id", "occurred_at"], batch_size=_BATCH_ROWS):
            ids = batch.column(0).to_pylist()
            times = batch.column(1).to_pylist()
            for event_id, moment in zip(ids, times, strict=True):
                yield event_id, _iso(moment)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def same_time(left: str | None, right: str | None) -> bool:
    """Compare two ISO 8601 timestamps as instants, whatever their offset notation."""
    if left is None or right is None:
        return left == right
    return datetime.fromisoformat(left) == datetime.fromisoformat(right)


def manifest_bytes(manifest: Manifest) -> bytes:
    return (jsonvalues.dumps(asdict(manifest), ensure_ascii=False, indent=2) + "\n").encode()
