"""sms-service-kaleyra: the `kaleyra` provider plugin for sms-service."""
