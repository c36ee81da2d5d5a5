"""WSGI entry point for gunicorn: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

import os

from sms_service.app import create_app
from sms_service.logs import configure_logging

configure_logging(os.environ.get("LOG_LEVEL", "info").strip().lower() or "info")
app = create_app()
