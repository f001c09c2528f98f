"""``make demo``: bring the platform up and show where to look.

Today the demo brings the real stack up, checks every service with a real
client call and prints how to reach each one. The batch, speed and serving
layers add their steps here as they land.
"""

from __future__ import annotations

import sys
import time

from core.settings import Settings, get_settings
from core.spark import spark_home
from deploy.local.process import StackError
from deploy.local.stack import Stack


def where_to_look(settings: Settings) -> str:
    a, m, sp, s3, k = settings.airflow, settings.mysql, settings.spark, settings.s3, settings.kafka
    host, port = m.server_host_port()
    return f"""
Where to look next
  Airflow UI      {a.url}   login {a.admin_user} / {a.admin_password.get_secret_value()}
  MySQL (analyst) mariadb -h {host} -P {port} -u {m.analyst_user} -p{m.analyst_password.get_secret_value()} {m.database} \\
                    -e 'SELECT version, name FROM schema_migrations'
  Hive (PyHive)   .venv/bin/python -c "from pyhive import hive; c=hive.connect('{sp.thrift_host}', {sp.thrift_port}, \\
                    auth='NONE', username='analyst').cursor(); c.execute('SHOW DATABASES'); print(c.fetchall())"
  Hive (beeline)  {spark_home()}/bin/beeline \\
                    -u jdbc:hive2://{sp.thrift_host}:{sp.thrift_port}/{sp.hive_database} -n analyst
  Kafka           {k.bootstrap}   topics: {', '.join(k.topics)}
  S3 (lake)       {s3.endpoint}   bucket {s3.bucket}, key {s3.access_key}
  Logs            {settings.log_dir}
  Stop it all     .venv/bin/lambdaml stack down
"""


def main() -> int:
    settings = get_settings()
    t0 = time.monotonic()
    print("== 1/1 bringing the stack up", flush=True)
    stack = Stack(settings)
    try:
        stack.up()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rows = stack.status()
    print("\n== Report")
    print(f"{'service':9s} {'state':10s} endpoint")
    for r in rows:
        print(f"{r.name:9s} {r.state:10s} {r.endpoint}")
    print(where_to_look(settings))
    print(f"demo finished in {time.monotonic() - t0:.0f}s")
    return 0 if all(r.healthy for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
