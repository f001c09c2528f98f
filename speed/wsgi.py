"""WSGI entry point for gunicorn: ``gunicorn -c speed/gunicorn_conf.py speed.wsgi:app``.

Imported once per worker after the fork (no preload), so each worker builds
its own model, torch thread pool and Kafka watcher.
"""

import logging

from speed.app import create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
app = create_app()
