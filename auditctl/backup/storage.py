"""Uploading a backup to S3-compatible storage (AWS, Yandex Object Storage, MinIO) and making a presigned link."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DeliveryError
from ..i18n import _
from .config import StorageSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadResult:
    """The object key of an uploaded backup and a time-limited link to download it."""

    key: str
    url: str
    expires_seconds: int


def make_client(settings: StorageSettings):
    import boto3
    from botocore.config import Config

    access_key = os.environ.get(settings.access_key_env)
    secret_key = os.environ.get(settings.secret_key_env)
    if not access_key or not secret_key:
        raise ConfigError(_("Storage credentials missing: set the environment variables {access} and {secret}.")
                          .format(access=settings.access_key_env, secret=settings.secret_key_env))
    return boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region or "us-east-1",
                        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                        config=Config(signature_version="s3v4", retries={"max_attempts": 3}))


def upload_backup(settings: StorageSettings, path: Path) -> UploadResult:
    """Upload ``path`` (multipart for large files, streamed from disk) and presign a GET link.

    Raises DeliveryError when the store rejects the upload or cannot be
    reached, and ConfigError when the credentials are missing.
    """
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    key = f"{settings.prefix.strip('/')}/{path.name}" if settings.prefix.strip("/") else path.name
    client = make_client(settings)
    try:
        client.upload_file(str(path), settings.bucket, key)
        url = client.generate_presigned_url("get_object", Params={"Bucket": settings.bucket, "Key": key},
                                            ExpiresIn=settings.link_expires_seconds)
    except (Boto3Error, BotoCoreError, ClientError) as exc:
        raise _upload_error(settings, path, exc) from None
    logger.info("uploaded %s to bucket %s as %s", path.name, settings.bucket, key)
    return UploadResult(key, url, settings.link_expires_seconds)


def _upload_error(settings: StorageSettings, path: Path, exc: Exception) -> DeliveryError:
    """Describe a failed upload by the store's own error.

    boto3's upload_file wraps the store's ClientError in S3UploadFailedError,
    whose text repeats the local path; the ClientError is its ``__context__``.
    """
    from botocore.exceptions import ClientError

    cause = exc.__context__ if isinstance(exc.__context__, ClientError) else exc
    if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") == "NoSuchBucket":
        return DeliveryError(_("Upload of {file} failed: bucket {bucket} does not exist at {endpoint}; create it "
                               "or correct bucket in [storage].").format(
            file=path.name, bucket=settings.bucket, endpoint=settings.endpoint_url or "AWS S3"))
    return DeliveryError(_("Upload of {file} to bucket {bucket} failed: {error}").format(
        file=path.name, bucket=settings.bucket, error=cause))
