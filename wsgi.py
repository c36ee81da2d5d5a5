"""WSGI entry point for gunicorn: ``gunicorn -c gunicorn.conf.py wsgi:app`` (or ``sms-service serve``)."""

from sms_service.serving import wsgi_app

app = wsgi_app()
