"""The local S3 server: Versity S3 Gateway, built from its pinned Go module.

It keeps objects as plain files and gives S3A correct directory semantics
(an empty "directory" exists and is a directory), which Spark's committers
and the Hive metastore rely on.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from pathlib import Path

from core.settings import Settings

MODULE = "github.com/versity/versitygw/cmd/versitygw"
VERSION = "v1.8.0"


def binary_path(settings: Settings) -> Path:
    return settings.cache_dir / "bin" / f"versitygw-{VERSION}"


def is_built(settings: Settings) -> bool:
    return binary_path(settings).exists()


def build(settings: Settings, log_file: Path | None = None, note: Callable[[str], None] | None = None) -> Path:
    """``go install`` the pinned module into the cache (Go's module and build caches make re-runs fast).

    Go comes from ``core.gotool``: the machine's own when it is at least 1.25, else the pinned toolchain
    from the Go module proxy. The output of ``go`` goes to ``log_file`` (default: the build's log under the
    runtime folder); ``note`` hears which Go was used."""
    from core import gotool

    return gotool.install_module(settings.cache_dir, MODULE, VERSION, "versitygw", binary_path(settings),
                                 log_file or settings.log_dir / "install-s3-server.log", note)


# ----------------------------------------------------------------------------- the read-only account
# versitygw keeps accounts in its internal IAM (`--iam-dir`); a `user` account reaches a bucket it does not
# own only through the bucket's policy. The Thrift Server's key gets one that allows reading the lake.

def read_only_policy(settings: Settings) -> dict:
    """The lake bucket's policy: the reader key may list the bucket and read objects, nothing else."""
    s3 = settings.s3
    bucket = f"arn:aws:s3:::{s3.bucket}"
    principal = {"AWS": [s3.reader_access_key]}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "LambdamlReaderListsTheLake", "Effect": "Allow", "Principal": principal,
             "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": [bucket]},
            {"Sid": "LambdamlReaderReadsTheLake", "Effect": "Allow", "Principal": principal,
             "Action": ["s3:GetObject"], "Resource": [f"{bucket}/*"]},
        ],
    }


def _admin(settings: Settings, path: str, body: bytes) -> tuple[int, str]:
    """One call of versitygw's admin API (PATCH, SigV4-signed with the root key), as its own CLI makes it."""
    import urllib.error
    import urllib.request

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    s3 = settings.s3
    url = f"{s3.endpoint}{path}"
    request = AWSRequest(method="PATCH", url=url, data=body,
                         headers={"X-Amz-Content-Sha256": hashlib.sha256(body).hexdigest()})
    SigV4Auth(Credentials(s3.access_key, s3.secret_key.get_secret_value()), "s3", s3.region).add_auth(request)
    prepared = urllib.request.Request(url, data=body, method="PATCH", headers=dict(request.headers.items()))
    try:
        with urllib.request.urlopen(prepared, timeout=10) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def ensure_reader(settings: Settings) -> None:
    """Create (or update) the read-only account and give the lake bucket its read-only policy (idempotent)."""
    import json
    from xml.sax.saxutils import escape

    from core.s3 import s3_client

    s3 = settings.s3
    if s3.reader_access_key == s3.access_key:
        raise RuntimeError("LAMBDAML_S3__READER_ACCESS_KEY must differ from LAMBDAML_S3__ACCESS_KEY: the Thrift "
                           "Server's key may only read")
    access, secret = escape(s3.reader_access_key), escape(s3.reader_secret_key.get_secret_value())
    account = (f"<Account><Access>{access}</Access><Secret>{secret}</Secret><Role>user</Role>"
               "<UserID>0</UserID><GroupID>0</GroupID><ProjectID>0</ProjectID></Account>").encode()
    status, text = _admin(settings, "/create-user", account)
    if status == 409 and "XAdminUserExists" in text:
        props = f"<MutableProps><Secret>{secret}</Secret><Role>user</Role></MutableProps>".encode()
        from urllib.parse import quote

        status, text = _admin(settings, f"/update-user?access={quote(s3.reader_access_key, safe='')}", props)
    if status >= 300:
        raise RuntimeError(f"creating the read-only S3 account {s3.reader_access_key!r} failed: HTTP {status} "
                           f"{text[:300]} (the S3 server needs --iam-dir)")
    policy = read_only_policy(settings)
    client = s3_client(settings)
    try:
        current = json.loads(client.get_bucket_policy(Bucket=s3.bucket)["Policy"])
    except client.exceptions.ClientError:
        current = None
    if current != policy:
        client.put_bucket_policy(Bucket=s3.bucket, Policy=json.dumps(policy))


def check_reader(settings: Settings) -> None:
    """Raise unless the reader key can list the lake bucket and is refused a write."""
    from botocore.exceptions import ClientError

    from core.s3 import s3_client

    s3 = settings.s3
    reader = s3_client(settings, reader=True)
    try:
        reader.list_objects_v2(Bucket=s3.bucket, MaxKeys=1)
    except ClientError as exc:
        raise RuntimeError(f"the read-only S3 key LAMBDAML_S3__READER_ACCESS_KEY={s3.reader_access_key} cannot "
                           f"list the bucket {s3.bucket}: {exc}") from exc
    probe = f"_lambdaml/reader-probe-{secrets.token_hex(6)}"
    try:
        reader.put_object(Bucket=s3.bucket, Key=probe, Body=b"")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("AccessDenied", "403"):
            return
        raise
    s3_client(settings).delete_object(Bucket=s3.bucket, Key=probe)
    raise RuntimeError(f"the S3 key LAMBDAML_S3__READER_ACCESS_KEY={s3.reader_access_key} can write to the bucket "
                       f"{s3.bucket}: the Thrift Server needs a key that may only read")
