"""The file formats of ``export``: their names, the file name suffixes that imply them, and compression."""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from ..errors import InvalidArgumentError
from ..i18n import _


class ExportFormat(StrEnum):
    """File format of an export. The compressed ones are those of ``rotate``'s archives."""

    csv = "csv"
    csv_gz = "csv.gz"
    jsonl = "jsonl"
    jsonl_zst = "jsonl.zst"
    parquet = "parquet"


# Each format's value is also the suffix of its file names: x.csv.gz is gzip-compressed CSV.
SUFFIX_FORMATS = {"." + each.value: each for each in ExportFormat}


def format_for_file(path: Path) -> tuple[str, ExportFormat] | None:
    """Return the suffix of the file's name, in any case, and the format it implies, or None for any other name."""
    name = path.name.lower()
    # The longest suffix first, should one format's suffix ever end another's.
    for suffix in sorted(SUFFIX_FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix, SUFFIX_FORMATS[suffix]
    return None


def choose_format(given: ExportFormat | None, output: Path | None) -> ExportFormat:
    """Return the format given with --format, else the one the name of --output implies, else CSV.

    Raises InvalidArgumentError when --format contradicts the suffix of
    --output, such as --format csv with report.parquet.
    """
    implied = format_for_file(output) if output is not None else None
    if given is None:
        return implied[1] if implied is not None else ExportFormat.csv
    if implied is not None and implied[1] is not given:
        suffix, implied_format = implied
        raise InvalidArgumentError(
            _("--format {format} does not match the output file {path}, whose suffix {suffix} means "
              "{implied}; leave --format out or change one of them.")
            .format(format=given.value, path=output, suffix=suffix, implied=implied_format.value))
    return given


@contextlib.contextmanager
def compressed(sink: BinaryIO, export_format: ExportFormat) -> Iterator[BinaryIO]:
    """Yield a writer that compresses into ``sink`` as the format requires, or ``sink`` itself.

    Closing the writer ends the compressed stream and leaves ``sink`` open.
    The levels are those of rotate's archives: gzip 6, as the gzip tool, and zstd 3.
    """
    if export_format is ExportFormat.csv_gz:
        # An empty file name keeps the temporary name of the output out of the gzip header.
        with gzip.GzipFile(filename="", fileobj=sink, mode="wb", compresslevel=6) as writer:
            yield writer
    elif export_format is ExportFormat.jsonl_zst:
        import zstandard

        with zstandard.ZstdCompressor(level=3).stream_writer(sink, closefd=False) as writer:
            yield writer
    else:
        yield sink
