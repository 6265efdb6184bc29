"""Uploading a backup to S3-compatible storage (AWS, Yandex Object Storage, MinIO) and making a presigned link."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DeliveryError
from ..i18n import _
from .config import StorageSettings
from .urls import make_s3_client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadResult:
    """The object key of an uploaded backup and a time-limited link to download it."""

    key: str
    url: str
    expires_seconds: int


# botocore's credential providers that read local files. The others ask
# the network (instance metadata, containers, STS, SSO) or repeat the
# environment variables, which make_client reads by their configured names.
_FILE_PROVIDERS = {"shared-credentials-file", "config-file"}


def make_client(settings: StorageSettings):
    """Return an S3 client with the keys from the environment, else from the shared credentials file."""
    import boto3
    from botocore.config import Config

    access_key = os.environ.get(settings.access_key_env)
    secret_key = os.environ.get(settings.secret_key_env)
    if access_key and secret_key:
        session = boto3.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key)
    else:
        session = _file_session(settings)
    return make_s3_client(session.client, settings.endpoint_url, _("endpoint_url in [storage]"),
                          region_name=settings.region or "us-east-1",
                          config=Config(signature_version="s3v4", retries={"max_attempts": 3}))


def keys_in_files(settings: StorageSettings) -> bool:
    """Tell whether the shared credentials file gives the keys, so that a cron job without the variables has them."""
    try:
        _file_session(settings)
    except ConfigError:
        return False
    return True


def _file_session(settings: StorageSettings):
    """Return a boto3 session whose keys come from ~/.aws/credentials or ~/.aws/config, as cron can read them."""
    import boto3
    import botocore.session
    from botocore.exceptions import BotoCoreError

    missing = ConfigError(
        _("Storage credentials missing: set the environment variables {access} and {secret}, or put the keys "
          "in the shared credentials file ~/.aws/credentials (profile {profile}).")
        .format(access=settings.access_key_env, secret=settings.secret_key_env,
                profile=settings.profile or "default"))
    try:
        core = botocore.session.Session(profile=settings.profile)
        resolver = core.get_component("credential_provider")
        for provider in list(resolver.providers):
            if provider.METHOD not in _FILE_PROVIDERS:
                resolver.remove(provider.METHOD)
        credentials = core.get_credentials()
    except BotoCoreError:
        raise missing from None
    if credentials is None:
        raise missing
    return boto3.Session(botocore_session=core)


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
    if is_missing_bucket(cause):
        return DeliveryError(_("Upload of {file} failed: bucket {bucket} does not exist at {endpoint}; create it "
                               "or correct bucket in [storage].").format(
            file=path.name, bucket=settings.bucket, endpoint=settings.endpoint_url or "AWS S3"))
    return DeliveryError(_("Upload of {file} to bucket {bucket} failed: {error}").format(
        file=path.name, bucket=settings.bucket, error=cause))


def is_missing_bucket(exc: Exception) -> bool:
    """Return whether the store's error reports that the bucket does not exist.

    Most responses carry the error code NoSuchBucket in their body. The
    response to a HEAD request, such as head_bucket, has no body, so botocore
    sets the code to the status, "404".
    """
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in ("NoSuchBucket", "404")
