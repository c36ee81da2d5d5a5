"""The twilio provider against the plugin conformance suite (sms_service.testing)."""

from __future__ import annotations

from twilio_fakes import ACCOUNT_SID, AUTH_TOKEN

from sms_service.provider import CallbackRequest
from sms_service.testing import Answer, ProviderConformance
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

    def _callback(self, sid, token):
        form = {"MessageSid": [sid], "MessageStatus": ["delivered"], "AccountSid": [ACCOUNT_SID]}
        headers = {"x-twilio-signature": signature.compute(token, self.callback_url, form)}
        return CallbackRequest(url=self.callback_url, headers=headers, body=b"",
                               form={k: tuple(v) for k, v in form.items()})

    def status_callback(self, provider, sid):
        return self._callback(sid, AUTH_TOKEN)

    def forged_status_callback(self, provider, sid):
        return self._callback(sid, "not-the-token")

    def _inbound(self, sender, body, token):
        url = self.callback_url.replace("/status", "/inbound")
        form = {"From": [sender], "Body": [body], "AccountSid": [ACCOUNT_SID]}
        headers = {"x-twilio-signature": signature.compute(token, url, form)}
        return CallbackRequest(url=url, headers=headers, body=b"", form={k: tuple(v) for k, v in form.items()})

    def inbound_post(self, provider, sender, body):
        return self._inbound(sender, body, AUTH_TOKEN)

    def forged_inbound_post(self, provider, sender, body):
        return self._inbound(sender, body, "not-the-token")
