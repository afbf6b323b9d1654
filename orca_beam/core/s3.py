"""``s3://`` through Beam's S3 filesystem, with unsigned requests for public buckets.

Beam's S3 client (``apache_beam.io.aws.clients.s3.boto3_client.Client``) has no anonymous mode:
with no AWS credentials its calls fail with "Unable to locate credentials" and Beam retries them
for minutes. It also builds a new boto3 session and client for every filesystem call. This module
replaces that class (``install``, done when ``orca_beam`` is imported, in the launcher and in
every worker) with one that:

* signs requests with the credentials of ``S3Options`` (``--s3_access_key_id`` ...) or of boto3's
  own chain (environment, ``~/.aws``, instance role) when there are any;
* sends unsigned requests (``botocore.UNSIGNED``) when there are none, or when
  ``--s3_anonymous`` asks for it: public buckets such as Orcasound's ``audio-orcasound-net`` are
  then read at once, with no credential retries;
* builds one boto3 client per process and settings, shared by every call (boto3 clients are
  thread-safe);
* writes empty files (Beam's uploader fails on them: S3 will not complete a multipart upload
  without parts).

Endpoint, region, SSL and verification come from Beam's ``S3Options`` (``--s3_endpoint_url``
for an emulator, ``--s3_region_name``).
"""

from __future__ import annotations

import logging
import threading

from apache_beam.io.aws.clients.s3 import boto3_client
from apache_beam.options.pipeline_options import PipelineOptions

LOG = logging.getLogger(__name__)

#: The S3Options fields that shape a client, plus this project's ``s3_anonymous``.
SETTINGS = ("s3_access_key_id", "s3_secret_access_key", "s3_session_token", "s3_endpoint_url",
            "s3_region_name", "s3_api_version", "s3_verify", "s3_disable_ssl", "s3_anonymous")

_LOCK = threading.Lock()
_CLIENTS: dict[tuple, object] = {}
_BEAM_CLIENT = boto3_client.Client


def s3_settings(options) -> dict:
    """The client settings from pipeline options (a PipelineOptions, a dict, or None)."""
    if isinstance(options, PipelineOptions):
        values = options.get_all_options(drop_default=False)
    else:
        values = dict(options or {})
    return {name: values.get(name) for name in SETTINGS}


def has_credentials(settings: dict) -> bool:
    """True when the settings carry keys, or boto3's default chain finds credentials."""
    if settings.get("s3_access_key_id") and settings.get("s3_secret_access_key"):
        return True
    import boto3

    return boto3.session.Session().get_credentials() is not None


def shared_client(settings: dict):
    """The boto3 S3 client of these settings, made once per process: unsigned when forced by
    ``s3_anonymous`` or when no credentials are found."""
    key = tuple(settings[name] for name in SETTINGS)
    with _LOCK:
        if key in _CLIENTS:
            return _CLIENTS[key]
        import boto3
        import botocore
        from botocore.config import Config

        unsigned = bool(settings.get("s3_anonymous")) or not has_credentials(settings)
        config = Config(signature_version=botocore.UNSIGNED) if unsigned else None
        client = boto3.session.Session().client(
            service_name="s3", region_name=settings.get("s3_region_name"),
            api_version=settings.get("s3_api_version"),
            use_ssl=not settings.get("s3_disable_ssl"), verify=settings.get("s3_verify"),
            endpoint_url=settings.get("s3_endpoint_url"),
            aws_access_key_id=None if unsigned else settings.get("s3_access_key_id"),
            aws_secret_access_key=None if unsigned else settings.get("s3_secret_access_key"),
            aws_session_token=None if unsigned else settings.get("s3_session_token"),
            config=config)
        if unsigned:
            LOG.info("s3://: %s; requests are unsigned (public buckets only)",
                     "--s3_anonymous" if settings.get("s3_anonymous")
                     else "no AWS credentials found")
        _CLIENTS[key] = client
        return client


class SharedS3Client(_BEAM_CLIENT):
    """Beam's S3 client wrapper, on the process's shared (and, without credentials, unsigned)
    boto3 client; every other method is Beam's."""

    def __init__(self, options):  # noqa: D107 - Beam's signature
        self.client = shared_client(s3_settings(options))
        self._download_request = None
        self._download_stream = None
        self._download_pos = 0

    def complete_multipart_upload(self, request):
        """Completes an upload; one with no part (an empty file: Beam's uploader sends every
        file as a multipart upload, and S3 refuses to complete one without parts, MalformedXML)
        is aborted and written as an empty object instead."""
        if request.parts:
            return super().complete_multipart_upload(request)
        from apache_beam.io.aws.clients.s3 import messages

        try:
            self.client.abort_multipart_upload(Bucket=request.bucket, Key=request.object,
                                               UploadId=request.upload_id)
            self.client.put_object(Bucket=request.bucket, Key=request.object, Body=b"")
        except Exception as exc:  # noqa: BLE001 - Beam's own error type, as its methods do
            raise messages.S3ClientError(str(exc), boto3_client.get_http_error_code(exc)) from exc
        return None


def install() -> None:
    """Makes Beam's S3 filesystem use :class:`SharedS3Client` in this process (idempotent)."""
    boto3_client.Client = SharedS3Client


def list_prefixes(root: str, options=None) -> list[str]:
    """The "folders" directly under ``root`` (``s3://bucket/prefix/``), as ``s3://`` paths
    ending in ``/``: a delimiter listing, one request per 1,000 folders whatever their content.
    ``options``: pipeline options (credentials, endpoint, region; see :func:`s3_settings`)."""
    bucket, _, prefix = root[len("s3://"):].partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    client = shared_client(s3_settings(options))
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"):
        found += [f"s3://{bucket}/{item['Prefix']}" for item in page.get("CommonPrefixes", [])]
    return found
