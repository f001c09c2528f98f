"""Thin adapter to the S3-compatible object store (boto3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # pragma: no cover


def s3_client(settings: Settings, *, reader: bool = False) -> "S3Client":
    """A client with the platform's key, or with the read-only key of the Thrift Server (``reader``)."""
    import boto3
    from botocore.config import Config

    s3 = settings.s3
    access, secret = (s3.reader_access_key, s3.reader_secret_key) if reader else (s3.access_key, s3.secret_key)
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name=s3.region,
        aws_access_key_id=access,
        aws_secret_access_key=secret.get_secret_value(),
        config=Config(
            s3={"addressing_style": "path"},
            # Non-AWS servers reject the SDK's default CRC trailers.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=3,
            read_timeout=30,
        ),
    )


def ensure_bucket(settings: Settings) -> None:
    client = s3_client(settings)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if settings.s3.bucket not in existing:
        client.create_bucket(Bucket=settings.s3.bucket)


def split_uri(uri: str) -> tuple[str, str]:
    """``s3a://bucket/key`` (or s3://) into (bucket, key)."""
    scheme, _, rest = uri.partition("://")
    if scheme not in ("s3", "s3a"):
        raise ValueError(f"not an S3 URI: {uri}")
    bucket, _, key = rest.partition("/")
    return bucket, key


def delete_prefix(settings: Settings, uri: str) -> int:
    """Delete every object under ``uri`` (``s3a://<bucket>/<prefix>``), children before their folder markers (the
    S3 server refuses to delete a marker of a folder that still holds objects); returns the objects deleted."""
    bucket, _, prefix = uri.split("://", 1)[1].partition("/")
    client = s3_client(settings)
    keys = [obj["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                                     Prefix=prefix.rstrip("/") + "/")
            for obj in page.get("Contents", [])]
    for key in sorted(keys, key=len, reverse=True):
        client.delete_object(Bucket=bucket, Key=key)
    return len(keys)
