"""Run the Spark Thrift Server (HiveServer2 protocol) as a container's main process.

The local stack starts it in the background with pid files
(``deploy.local.services.ThriftServer``); a container wants it in the
foreground instead. This creates the Hive metastore schema if the metastore
database is still empty, and the `default` and `lake` databases with the
platform's credentials (idempotent), writes the analysts' login file, then
replaces itself with the same ``spark-submit`` command the local stack runs,
built from the settings: analysts log in, and the server holds only the
metastore reader's login and the S3 read-only key. Set
``LAMBDAML_BIND_HOST=0.0.0.0`` so that other containers can reach it.

    python deploy/docker/thrift_server.py
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    from core.settings import get_settings
    from deploy.local.process import StackError
    from deploy.local.services import ThriftServer

    settings = get_settings()
    server = ThriftServer(settings)
    print(f"thrift-server: metastore schema in {settings.mysql.metastore_database} ...", flush=True)
    try:
        server.prepare()
        argv, env = server.command()
    except StackError as exc:
        sys.exit(f"thrift-server: {exc}")
    print(f"thrift-server: listening on {settings.bind_host}:{settings.spark.thrift_port}, "
          f"master {settings.spark.master}", flush=True)
    os.chdir(server.home)
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    main()
