"""sms-service-plivo: the `plivo` provider plugin for sms-service."""
