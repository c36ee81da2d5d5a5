"""The twilio provider against the plugin conformance suite (sms_service.testing)."""

from __future__ import annotations

from twilio_fakes import ACCOUNT_SID, AUTH_TOKEN

from sms_service.testing import Answer, ProviderConformance, form_request
from sms_service_twilio import signature
from sms_service_twilio.provider import TwilioProvider


class TestTwilioConformance(ProviderConformance):
    provider_class = TwilioProvider
    env = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
    secrets = (AUTH_TOKEN,)
    required_variables = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
    invalid_values = {"TWILIO_ACCOUNT_SID": "XX123"}
    base_url_variable = "TWILIO_BASE_URL"
    callback_url = "https://sms.example.com/callbacks/twilio/status"

    def send_answer(self, request):
        return Answer(201, {"sid": "SM" + "0" * 32, "status": "queued", "num_segments": "1",
                            "date_created": "Thu, 26 Nov 2026 08:00:00 +0000"})

    def error_answers(self):
        answers = super().error_answers()
        # Twilio's own error body: {"code", "message", "more_info", "status"}.
        for kind, (answer, error) in answers.items():
            if answer.status >= 400:
                body = {"code": 21211, "message": "refused by the suite", "status": answer.status}
                answers[kind] = (Answer(answer.status, body, answer.headers), error)
        return answers

    def balance_answer(self, request):
        return Answer(200, {"balance": "12.50", "currency": "USD", "account_sid": ACCOUNT_SID})

    def _signed(self, url, fields, token):
        request = form_request(url, fields)
        return form_request(url, fields, {"x-twilio-signature": signature.compute(token, url, request.form)})

    def _callback(self, sid, token):
        fields = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": ACCOUNT_SID}
        return self._signed(self.callback_url, fields, token)

    def status_callback(self, provider, sid):
        return self._callback(sid, AUTH_TOKEN)

    def forged_status_callback(self, provider, sid):
        return self._callback(sid, "not-the-token")

    def _inbound(self, sender, body, token):
        url = self.callback_url.replace("/status", "/inbound")
        return self._signed(url, {"From": sender, "Body": body, "AccountSid": ACCOUNT_SID}, token)

    def inbound_post(self, provider, sender, body):
        return self._inbound(sender, body, AUTH_TOKEN)

    def forged_inbound_post(self, provider, sender, body):
        return self._inbound(sender, body, "not-the-token")
