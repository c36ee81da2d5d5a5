"""gunicorn settings for `gunicorn -c gunicorn.conf.py wsgi:app`: the service's packaged ones.

They live in sms_service/serving.py, which `sms-service serve` runs from any directory;
this file keeps the plain gunicorn command working from the source tree.
"""

from sms_service.serving import packaged_settings

globals().update(packaged_settings())
