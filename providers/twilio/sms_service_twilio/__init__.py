"""sms-service-twilio: the `twilio` provider plugin for sms-service."""
