"""The plivo provider against the plugin conformance suite (sms_service.testing)."""

from __future__ import annotations

from plivo_fakes import ACCOUNT, AUTH_ID, AUTH_TOKEN, QUEUED, error_body, signed, status_form

from sms_service.testing import Answer, ProviderConformance
from sms_service_plivo.provider import PlivoProvider


class TestPlivoConformance(ProviderConformance):
    provider_class = PlivoProvider
    env = {"PLIVO_AUTH_ID": AUTH_ID, "PLIVO_AUTH_TOKEN": AUTH_TOKEN}
    secrets = (AUTH_TOKEN,)
    required_variables = ("PLIVO_AUTH_ID", "PLIVO_AUTH_TOKEN")
    invalid_values = {"PLIVO_AUTH_ID": "MA-not/an-id"}
    base_url_variable = "PLIVO_BASE_URL"
    callback_url = "https://sms.example.com/callbacks/plivo/status"

    def send_answer(self, request):
        return Answer(202, QUEUED)

    def error_answers(self):
        answers = super().error_answers()
        # Plivo's own error body: {"api_id", "error"}.
        for kind, (answer, error) in answers.items():
            if answer.status >= 400:
                answers[kind] = (Answer(answer.status, error_body("refused by the suite"), answer.headers), error)
        return answers

    def balance_answer(self, request):
        return Answer(200, ACCOUNT)

    def _status(self, sid, token):
        form = status_form("delivered", MessageUUID=sid)
        return signed(self.callback_url, form, token=token)

    def status_callback(self, provider, sid):
        return self._status(sid, AUTH_TOKEN)

    def forged_status_callback(self, provider, sid):
        return self._status(sid, "not-the-token")

    def _inbound(self, sender, body, token):
        url = self.callback_url.replace("/status", "/inbound")
        form = {"From": [sender.lstrip("+")], "To": ["14156667777"], "Text": [body], "Type": ["sms"]}
        return signed(url, form, token=token)

    def inbound_post(self, provider, sender, body):
        return self._inbound(sender, body, AUTH_TOKEN)

    def forged_inbound_post(self, provider, sender, body):
        return self._inbound(sender, body, "not-the-token")
