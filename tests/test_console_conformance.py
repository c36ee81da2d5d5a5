"""The console provider against the plugin conformance suite (sms_service.testing)."""

from __future__ import annotations

import json

from sms_service.console_provider import ConsoleProvider
from sms_service.provider import CallbackRequest
from sms_service.testing import ProviderConformance


class TestConsoleConformance(ProviderConformance):
    provider_class = ConsoleProvider
    base_url_variable = None  # it makes no HTTP calls to a provider

    def status_callback(self, provider, sid):
        report = {"sid": sid, "status": "delivered"}
        return CallbackRequest(url=self.callback_url, headers={"content-type": "application/json"},
                               body=json.dumps(report).encode(), json=report)

    def inbound_post(self, provider, sender, body):
        post = {"from": sender, "body": body}
        return CallbackRequest(url=self.callback_url, headers={"content-type": "application/json"},
                               body=json.dumps(post).encode(), json=post)
