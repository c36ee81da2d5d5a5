"""sms-service: send SMS over HTTP through pluggable providers, guarded against pumping."""

from importlib import metadata

try:
    __version__ = metadata.version("sms-service")
except metadata.PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0+unknown"
