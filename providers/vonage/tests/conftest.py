"""Shared fixtures for the Vonage provider tests: a configuration, providers, a strict HTTP fake."""

from __future__ import annotations

import pytest
import responses
from vonage_fakes import API_KEY, API_SECRET

from sms_service_vonage.provider import VonageProvider


@pytest.fixture
def env() -> dict[str, str]:
    """The smallest valid configuration, with an unrelated key the provider must ignore."""
    return {"VONAGE_API_KEY": API_KEY, "VONAGE_API_SECRET": API_SECRET, "TWILIO_AUTH_TOKEN": "not-ours"}


@pytest.fixture
def make_provider(env):
    """Build providers from `env` plus overrides, and close them after the test."""
    built: list[VonageProvider] = []

    def make(callback_url: str | None = None, **overrides: str) -> VonageProvider:
        provider = VonageProvider({**env, **overrides}, timeout=5, callback_url=callback_url)
        built.append(provider)
        return provider

    yield make
    for provider in built:
        provider.close()


@pytest.fixture
def http():
    """A fake Vonage that fails the test on any unexpected or missing call."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock
