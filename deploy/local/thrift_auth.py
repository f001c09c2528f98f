"""The analysts' Thrift Server: who may log in, and the Java classes that lock it to reading.

Two small Java classes (``deploy/local/java/lambdaml/hive``) are compiled with javac against the jars
pyspark ships, into one jar in the cache (``<cache>/hive-guard/``), keyed by the hash of their sources
and the Spark version:

- ``PasswordFileAuthenticator``: HiveServer2 ``CUSTOM`` authentication against a file of salted
  PBKDF2-SHA256 hashes that the platform writes under the runtime folder (mode 0600). A wrong password
  or an unknown user is refused at connect.
- ``ReadOnlyGuard``: a Spark SQL extension that refuses, with an error that says so, every statement
  that would write or change something, before it runs.

The locks that SQL cannot get around are the server's credentials (``ThriftServer.command``): a
metastore database user with SELECT only, and an S3 key whose bucket policy allows only reads.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from core.settings import Settings

SOURCES = Path(__file__).resolve().parent / "java"
AUTHENTICATOR = "lambdaml.hive.PasswordFileAuthenticator"
GUARD = "lambdaml.hive.ReadOnlyGuard"
FILE_PROPERTY = "lambdaml.thrift.passwords.file"  # the login file, read by the authenticator (a --hiveconf: a system property)
SCHEME = "pbkdf2_sha256"
ITERATIONS = 200_000


def source_files(sources: Path = SOURCES) -> list[Path]:
    return sorted(sources.rglob("*.java"))


def _spark_version() -> str:
    import pyspark

    return pyspark.__version__


def jar_path(settings: Settings, sources: Path = SOURCES) -> Path:
    """Where the compiled classes live: keyed by their sources and the Spark version they were built against."""
    digest = hashlib.sha256(_spark_version().encode())
    for src in source_files(sources):
        digest.update(src.relative_to(sources).as_posix().encode() + b"\0" + src.read_bytes())
    return settings.cache_dir / "hive-guard" / f"lambdaml-hive-{digest.hexdigest()[:12]}.jar"


def is_built(settings: Settings) -> bool:
    return jar_path(settings).is_file()


def jdk_tool(settings: Settings, tool: str, missing: str) -> str:
    """``tool`` (java, javac) of ``LAMBDAML_JAVA_HOME`` when set, else of the PATH; ``RuntimeError(missing)``
    when there is none."""
    if settings.java_home:
        candidate = settings.java_home / "bin" / tool
        if candidate.exists():
            return str(candidate)
        raise RuntimeError(f"LAMBDAML_JAVA_HOME={settings.java_home}: no bin/{tool} there")
    found = shutil.which(tool)
    if not found:
        raise RuntimeError(missing)
    return found


def javac(settings: Settings) -> str:
    return jdk_tool(settings, "javac", "javac is missing: run `make install` (it installs openjdk-17-jdk-headless); "
                    "the Thrift Server's login and read-only classes are compiled against pyspark's jars.")


def build(settings: Settings) -> Path:
    """Compile the classes against pyspark's jars into the cache (idempotent)."""
    from core.spark import spark_home

    target = jar_path(settings)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        classes = Path(tmp) / "classes"
        cmd = [javac(settings), "--release", "17", "-nowarn", "-encoding", "UTF-8",
               "-cp", str(spark_home() / "jars" / "*"), "-d", str(classes), *map(str, source_files())]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"compiling the Thrift Server's classes failed:\n{result.stdout[-3000:]}"
                               f"{result.stderr[-3000:]}")
        staging = Path(tmp) / target.name
        with zipfile.ZipFile(staging, "w", zipfile.ZIP_DEFLATED) as jar:
            jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: lambdaml\n")
            for cls in sorted(classes.rglob("*.class")):
                jar.write(cls, cls.relative_to(classes).as_posix())
        staging.replace(target)
    return target


def password_line(user: str, password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """One line of the password file: ``user:pbkdf2_sha256:iterations:base64(salt):base64(hash)``."""
    if not user or any(c in user for c in ":\n\r#") or user != user.strip():
        raise ValueError(f"{user!r} cannot be a Thrift Server user name (no ':', '#', line breaks or edge spaces)")
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, dklen=32)
    b64 = base64.b64encode
    return f"{user}:{SCHEME}:{iterations}:{b64(salt).decode()}:{b64(digest).decode()}"


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """Write the hashes of ``users`` (name -> password) to ``path``, readable by this OS user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".tmp")
    staging.touch(mode=0o600)
    staging.chmod(0o600)
    staging.write_text("# lambdaml Thrift Server logins, written by `lambdaml stack up`\n"
                       + "".join(password_line(u, p) + "\n" for u, p in users.items()))
    staging.replace(path)
    return path


def thrift_users(settings: Settings) -> dict[str, str]:
    """Who may log in to the Thrift Server: the analyst account (read-only in MySQL and in Hive)."""
    m = settings.mysql
    return {m.analyst_user: m.analyst_password.get_secret_value()}
