"""Real parts for the tests: redis-server, a fake provider on loopback, gunicorn."""
