"""Paths in the lake and file-level access to it (pyarrow), for non-Spark writers.

Layout under the lake root (``s3a://<bucket>`` or a ``file://`` folder), for each workload (``core.workload``;
taxi's entity is ``trips``, its partition column ``pickup_date``):

- ``raw/<entity>/<partition column>=YYYY-MM-DD/``        immutable, append-only master data
- ``validated/<entity>/<partition column>=YYYY-MM-DD/``  rows that passed every rule
- ``quarantine/<entity>/<partition column>=YYYY-MM-DD/`` rows that failed one, with ``failed_rule``
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    import pyarrow.fs as pafs


class DataError(ValueError):
    """A problem with the data itself (a file that cannot be read, too few rows for a split): running the same
    step again gives the same error, so it fails at once instead of being retried."""


class NoRawData(DataError, FileNotFoundError):
    """A raw partition holds no data."""


def root(settings: Settings, lake_root: str | None = None) -> str:
    return (lake_root or settings.s3.uri()).rstrip("/")


def partition(base: str, dataset: str, day: dt.date, column: str) -> str:
    """``<base>/<dataset>/<column>=YYYY-MM-DD``: one day's partition of a dataset (``Workload.partition`` names a
    workload's)."""
    return f"{base}/{dataset}/{column}={day.isoformat()}"


def filesystem(settings: Settings, uri: str) -> tuple["pafs.FileSystem", str]:
    """A pyarrow filesystem for ``uri`` and the path inside it."""
    import pyarrow.fs as pafs

    if uri.startswith(("s3a://", "s3://")):
        s3 = settings.s3
        scheme = "https" if s3.endpoint.startswith("https") else "http"
        endpoint = s3.endpoint.split("://", 1)[1]
        fs = pafs.S3FileSystem(
            access_key=s3.access_key, secret_key=s3.secret_key.get_secret_value(), region=s3.region,
            endpoint_override=endpoint, scheme=scheme, allow_bucket_creation=False,
        )
        return fs, uri.split("://", 1)[1]
    if uri.startswith("file://"):
        from urllib.parse import unquote

        return pafs.LocalFileSystem(), unquote(uri[len("file://"):])
    return pafs.LocalFileSystem(), uri


def is_dir(settings: Settings, uri: str) -> bool:
    """Whether ``uri`` is a folder that holds something (on S3: a prefix with objects)."""
    import pyarrow.fs as pafs

    fs, path = filesystem(settings, uri)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def spark_uri(uri: str) -> str:
    """The form Spark reads: s3a:// stays, a bare local path becomes file://."""
    if "://" in uri:
        return uri.replace("s3://", "s3a://", 1)
    from pathlib import Path

    return Path(uri).resolve().as_uri()
