"""Archive destinations: a local folder or an S3 bucket, which take finished archive files under their final names."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from ..backup.urls import make_s3_client
from ..errors import InvalidArgumentError
from ..files import check_writable_folder
from ..i18n import _
from .archive import ArchiveError, ArchiveExistsError

logger = logging.getLogger(__name__)


class Destination:
    """Storage for archives: a local folder or an S3 bucket."""

    def describe(self, name: str) -> str:
        raise NotImplementedError

    def check(self) -> None:
        """Raise ArchiveError when the destination cannot take files."""

    def exists(self, name: str) -> bool:
        """Tell whether the destination has a file named ``name``."""
        raise NotImplementedError

    def store(self, local: Path, name: str) -> str:
        """Store a finished local file under ``name`` atomically; return its location.

        Raises ArchiveExistsError, and keeps ``local``, when ``name`` is taken.
        """
        raise NotImplementedError

    def _exists_error(self, name: str) -> ArchiveExistsError:
        return ArchiveExistsError(_("{location} already exists; auditctl never replaces an archive.").format(
            location=self.describe(name)))

    @contextlib.contextmanager
    def fetch(self, name: str) -> Iterator[Path]:
        """Yield a local path with the stored bytes of ``name``, for reading back."""
        raise NotImplementedError

    def remove(self, name: str) -> None:
        """Delete a file that a failed rotation stored, so that no bad or duplicate archive stays under a final name."""
        raise NotImplementedError

    def scratch_dir(self) -> str | None:
        return None


class LocalDestination(Destination):
    """A folder on this machine."""

    def __init__(self, folder: Path):
        self.folder = folder

    def describe(self, name: str) -> str:
        # The absolute path still names the file when read from another folder, as in a ROTATE event.
        return str(self.folder.resolve() / name)

    def check(self) -> None:
        problem = check_writable_folder(self.folder)
        if problem is not None:
            # A folder that cannot be used is bad input, as for export and backup.
            raise InvalidArgumentError(problem.message(
                missing=_("Archive folder {folder} does not exist; create it first."),
                not_a_folder=_("Archive folder {folder} is not a folder; pass a folder to --archive-dir."),
                not_writable=_("Archive folder {folder} is not writable ({error}); pass another folder to "
                               "--archive-dir."),
                folder=self.folder))

    def scratch_dir(self) -> str | None:
        return str(self.folder)

    def exists(self, name: str) -> bool:
        return os.path.lexists(self.folder / name)

    def store(self, local: Path, name: str) -> str:
        final = self.folder / name
        # The data reaches the disk before the rename, and the rename before
        # the caller drops the partition, so a crash cannot lose both copies.
        with local.open("rb") as handle:
            os.fsync(handle.fileno())
        _rename_without_replacing(local, final, self._exists_error(name))
        folder = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        logger.info("wrote %s", final)
        return self.describe(name)

    @contextlib.contextmanager
    def fetch(self, name: str) -> Iterator[Path]:
        yield self.folder / name

    def remove(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)
        logger.info("removed %s", self.folder / name)


def _rename_without_replacing(local: Path, final: Path, exists_error: ArchiveExistsError) -> None:
    """Give ``local`` the name ``final``, which must not exist; raise ``exists_error`` and keep ``local`` if it does.

    A hard link is made atomically and fails on an existing name, unlike a
    rename, so two rotations writing the same name cannot replace each other's
    file. The scratch file sits in the same folder, so linking it is possible.
    """
    try:
        os.link(local, final)
    except FileExistsError:
        raise exists_error from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
        # Some file systems, such as FAT and some network mounts, have no
        # hard links; there a check before the rename has to do.
        if os.path.lexists(final):
            raise exists_error from None
        os.rename(local, final)
        return
    local.unlink()


class S3Destination(Destination):
    """An S3 bucket and key prefix, through boto3, with an optional endpoint URL for S3-compatible stores."""

    def __init__(self, url: str, endpoint_url: str | None = None, endpoint_origin: str = "--s3-endpoint-url"):
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise InvalidArgumentError(
                _("Invalid --archive-s3 value {value!r}: use s3://BUCKET or s3://BUCKET/PREFIX.").format(value=url))
        import boto3

        from boto3.s3.transfer import TransferConfig

        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.client = make_s3_client(boto3.client, endpoint_url, endpoint_origin)
        # The classic transfer manager sends every request through self.client, so the handler below runs for
        # each one. boto3 picks its CRT manager instead on some EC2 instance types when awscrt is installed.
        self.transfer_config = TransferConfig(preferred_transfer_client="classic")
        # Whether uploads carry If-None-Match: *, until the store rejects it with 501 NotImplemented.
        self.conditional_writes = True
        # upload_file does not pass IfNoneMatch through ExtraArgs, so a handler adds it to the request of a
        # single-part upload and to the request that completes a multipart upload.
        for operation in ("PutObject", "CompleteMultipartUpload"):
            self.client.meta.events.register(f"before-parameter-build.s3.{operation}", self._add_if_none_match)

    def _add_if_none_match(self, params: dict, **kwargs) -> None:
        if self.conditional_writes:
            params["IfNoneMatch"] = "*"

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def describe(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(name)}"

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            # HeadBucket has no response body, so a missing bucket shows only as its HTTP status.
            if _s3_status(exc) == 404:
                raise ArchiveError(_("S3 bucket {bucket} does not exist at {endpoint}; create it or correct the "
                                     "bucket in --archive-s3.").format(
                    bucket=self.bucket, endpoint=self.client.meta.endpoint_url)) from exc
            raise ArchiveError(_("S3 bucket {bucket} is not reachable: {error}").format(
                bucket=self.bucket, error=exc)) from exc

    def exists(self, name: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        except Exception as exc:
            status = _s3_status(exc)
            if status == 404:
                return False
            if status == 403:
                # S3 returns 403, not 404, for a missing key when the credentials lack s3:ListBucket.
                raise ArchiveError(_("Could not check whether {location} exists: access denied. Grant the "
                                     "archive's credentials s3:ListBucket, so that a missing key reads as "
                                     "missing.").format(location=self.describe(name))) from exc
            raise ArchiveError(_("Could not check whether {location} exists: {error}").format(
                location=self.describe(name), error=exc)) from exc
        return True

    def store(self, local: Path, name: str) -> str:
        # S3 has no rename, but an upload is atomic: the key shows either no
        # object or the complete new one, never a part. The check gives the
        # usual message before any upload, and the condition on the upload
        # keeps an object that another writer stores after the check.
        if self.exists(name):
            raise self._exists_error(name)
        try:
            self._upload(local, name)
        except Exception as exc:
            if _is_key_taken(exc):
                raise self._exists_error(name) from exc
            raise ArchiveError(_("Upload to {location} failed: {error}").format(
                location=self.describe(name), error=exc)) from exc
        local.unlink()
        logger.info("uploaded %s", self.describe(name))
        return self.describe(name)

    def _upload(self, local: Path, name: str) -> None:
        """Upload ``local`` on the condition that ``name`` does not exist, unless the store lacks conditional writes.

        A store that rejects the condition with 501 NotImplemented, the S3
        error for a header whose function the store lacks, gets the upload
        again without it. A store that ignores the header cannot be
        distinguished from one that honours it, so there the check in
        ``store`` is the only guard.
        """
        try:
            self.client.upload_file(str(local), self.bucket, self._key(name), Config=self.transfer_config)
        except Exception as exc:
            if not self.conditional_writes or _s3_error_code(exc) != "NotImplemented":
                raise
            # NOTE: from here on, a rotation that uploads the same key between
            # the check in store() and this upload replaces that object.
            self.conditional_writes = False
            logger.warning("the S3 store at %s does not support conditional writes (If-None-Match: *), so rotate "
                           "uploads without the condition after checking that the key does not exist: %s",
                           self.client.meta.endpoint_url, _s3_client_error(exc))
            self.client.upload_file(str(local), self.bucket, self._key(name), Config=self.transfer_config)

    @contextlib.contextmanager
    def fetch(self, name: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="auditctl-readback-") as folder:
            path = Path(folder) / name
            try:
                self.client.download_file(self.bucket, self._key(name), str(path))
            except Exception as exc:
                raise ArchiveError(_("Download of {location} for verification failed: {error}").format(
                    location=self.describe(name), error=exc)) from exc
            yield path

    def remove(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(name))
        logger.info("removed %s", self.describe(name))


def _s3_client_error(exc: Exception) -> Exception | None:
    """Return the botocore ClientError behind ``exc``, or None for other errors.

    boto3's upload_file raises S3UploadFailedError while handling the
    store's ClientError, so that error is its ``__context__``.
    """
    from boto3.exceptions import S3UploadFailedError

    cause = exc.__context__ if isinstance(exc, S3UploadFailedError) else exc
    return cause if isinstance(getattr(cause, "response", None), dict) else None


def _s3_status(exc: Exception) -> int | None:
    """Return the HTTP status of a botocore ClientError, or None for other errors."""
    client_error = _s3_client_error(exc)
    if client_error is None:
        return None
    return client_error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _s3_error_code(exc: Exception) -> str | None:
    """Return the S3 error code of a botocore ClientError, such as NoSuchKey, or None for other errors."""
    client_error = _s3_client_error(exc)
    if client_error is None:
        return None
    return client_error.response.get("Error", {}).get("Code")


def _is_key_taken(exc: Exception) -> bool:
    """Tell whether a conditional upload failed because another object has the key or is being written to it.

    AWS S3 and moto 5.2.6 return 412 PreconditionFailed when the key exists.
    AWS S3 returns 409 ConditionalRequestConflict when a conflicting
    operation on the key runs during the upload. The key may then end up
    free or taken, but either way this upload replaced nothing.
    """
    return _s3_status(exc) == 412 or _s3_error_code(exc) == "ConditionalRequestConflict"
