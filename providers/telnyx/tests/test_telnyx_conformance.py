"""The telnyx provider against the plugin conformance suite (sms_service.testing)."""

from __future__ import annotations

from telnyx_fakes import API_KEY, OTHER_KEY, PUBLIC_KEY, answer, error_body, event, message_object, signed

from sms_service.testing import Answer, ProviderConformance
from sms_service_telnyx.provider import TelnyxProvider


class TestTelnyxConformance(ProviderConformance):
    provider_class = TelnyxProvider
    env = {"TELNYX_API_KEY": API_KEY, "TELNYX_PUBLIC_KEY": PUBLIC_KEY}
    secrets = (API_KEY,)
    required_variables = ("TELNYX_API_KEY", "TELNYX_PUBLIC_KEY")
    invalid_values = {"TELNYX_PUBLIC_KEY": "c2hvcnQ="}
    base_url_variable = "TELNYX_BASE_URL"
    callback_url = "https://sms.example.com/callbacks/telnyx/status"

    def send_answer(self, request):
        return Answer(200, answer(message_object()))

    def error_answers(self):
        answers = super().error_answers()
        codes = {400: "10002", 401: "10009", 429: "10011", 503: "10007"}
        for kind, (reply, error) in answers.items():
            if reply.status in codes:
                answers[kind] = (Answer(reply.status, error_body(codes[reply.status], "refused by the suite"),
                                        reply.headers), error)
        return answers

    def balance_answer(self, request):
        return Answer(200, {"data": {"balance": "12.50", "available_credit": "12.50", "currency": "USD"}})

    def status_callback(self, provider, sid):
        return signed(self.callback_url, event("message.finalized", message_object("delivered", message_id=sid)))

    def forged_status_callback(self, provider, sid):
        return signed(self.callback_url, event("message.finalized", message_object("delivered", message_id=sid)),
                      key=OTHER_KEY)

    def _inbound(self, sender, body, **kwargs):
        payload = {**message_object("webhook_delivered", direction="inbound", text=body),
                   "from": {"phone_number": sender}}
        return signed(self.callback_url.replace("/status", "/inbound"), event("message.received", payload), **kwargs)

    def inbound_post(self, provider, sender, body):
        return self._inbound(sender, body)

    def forged_inbound_post(self, provider, sender, body):
        return self._inbound(sender, body, key=OTHER_KEY)
