"""sms-service-vonage: the `vonage` provider plugin for sms-service."""
