"""The vonage provider against the plugin conformance suite (sms_service.testing), in both webhook modes."""

from __future__ import annotations

from vonage_fakes import API_KEY, API_SECRET, SIGNATURE_SECRET, as_form, inbound_fields, receipt_fields, sign

from sms_service.exceptions import MessageRejected, ProviderRateLimited
from sms_service.testing import Answer, ProviderConformance
from sms_service_vonage.provider import VonageProvider


class TestVonageSignedConformance(ProviderConformance):
    provider_class = VonageProvider
    env = {"VONAGE_API_KEY": API_KEY, "VONAGE_API_SECRET": API_SECRET,
           "VONAGE_SIGNATURE_SECRET": SIGNATURE_SECRET, "VONAGE_SIGNATURE_METHOD": "sha256"}
    secrets = (API_SECRET, SIGNATURE_SECRET)
    required_variables = ("VONAGE_API_KEY", "VONAGE_API_SECRET")
    invalid_values = {"VONAGE_SIGNATURE_METHOD": "rot13", "VONAGE_CURRENCY": "euro", "VONAGE_API_KEY": "a b"}
    base_url_variable = "VONAGE_BASE_URL"
    callback_url = "https://sms.example.com/callbacks/vonage/status"

    def send_answer(self, request):
        return Answer(200, {"message-count": "1", "messages": [
            {"to": "14155550123", "message-id": "0A0000000123ABCD1", "status": "0",
             "remaining-balance": "3.14", "message-price": "0.0333", "network": "310260"}]})

    def error_answers(self):
        answers = super().error_answers()
        # Vonage refuses inside HTTP 200 answers: its own shapes for these two.
        answers["rejected"] = (Answer(200, {"message-count": "1", "messages": [
            {"status": "3", "error-text": "Invalid to param"}]}), MessageRejected)
        answers["throttled"] = (Answer(200, {"message-count": "1", "messages": [
            {"status": "1", "error-text": "Throughput Rate Exceeded"}]}, {"Retry-After": "7"}), ProviderRateLimited)
        return answers

    def balance_answer(self, request):
        return Answer(200, {"value": 3.14159, "autoReload": False})

    def _signed(self, url, fields, secret):
        return as_form(url, sign(fields, secret, "sha256"))

    def status_callback(self, provider, sid):
        return self._signed(self.callback_url, receipt_fields(sid), SIGNATURE_SECRET)

    def forged_status_callback(self, provider, sid):
        return self._signed(self.callback_url, receipt_fields(sid), "not-the-secret")

    def inbound_post(self, provider, sender, body):
        url = self.callback_url.replace("/status", "/inbound")
        return self._signed(url, inbound_fields(sender.removeprefix("+"), body), SIGNATURE_SECRET)

    def forged_inbound_post(self, provider, sender, body):
        url = self.callback_url.replace("/status", "/inbound")
        return self._signed(url, inbound_fields(sender.removeprefix("+"), body), "not-the-secret")


class TestVonageTokenConformance(TestVonageSignedConformance):
    """Without a signature secret: the service checks the URL's CALLBACK_SECRET token first."""

    env = {"VONAGE_API_KEY": API_KEY, "VONAGE_API_SECRET": API_SECRET}
    secrets = (API_SECRET,)
    callback_url = "https://sms.example.com/callbacks/vonage/status?token=abc"

    def status_callback(self, provider, sid):
        return as_form(self.callback_url, receipt_fields(sid))

    def forged_status_callback(self, provider, sid):
        return None

    def inbound_post(self, provider, sender, body):
        return as_form(self.callback_url.replace("/status", "/inbound"),
                       inbound_fields(sender.removeprefix("+"), body))

    def forged_inbound_post(self, provider, sender, body):
        return None
