"""The kaleyra provider against the plugin conformance suite (sms_service.testing)."""

from __future__ import annotations

from sms_service.testing import Answer, ProviderConformance, json_request
from sms_service_kaleyra.provider import KaleyraProvider

API_KEY = "A0123456789abcdef0123456789abcdef"
SID = "HXAP1649996084IN"


class TestKaleyraConformance(ProviderConformance):
    provider_class = KaleyraProvider
    env = {"KALEYRA_API_KEY": API_KEY, "KALEYRA_SID": SID}
    secrets = (API_KEY,)
    required_variables = ("KALEYRA_API_KEY", "KALEYRA_SID")
    invalid_values = {"KALEYRA_SMS_TYPE": "SPAM"}
    base_url_variable = "KALEYRA_BASE_URL"
    callback_url = "https://sms.example.com/callbacks/kaleyra/status?token=abc"

    def send_answer(self, request):
        return Answer(202, {"id": "d0b238ef-4a2c-4c8b-9b55-1f3e2a8c9d10", "totalCount": 1,
                            "createdDateTime": "2022-11-23 15:10:53+00:00", "error": {}})

    def balance_answer(self, request):
        return Answer(200, {"code": "RBC200", "data": {"balance": 99.5, "currency": "INR"}})

    def status_callback(self, provider, sid):
        # Kaleyra cannot sign: the service checks the URL's token before the plugin runs.
        return json_request(self.callback_url, {"id": sid, "status": "DELIVRD"})
