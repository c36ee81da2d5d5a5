"""sms-service-telnyx: the `telnyx` provider plugin for sms-service."""
