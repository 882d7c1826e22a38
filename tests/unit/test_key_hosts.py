"""A key goes only to its own service's host unless the user confirmed the host."""

from __future__ import annotations

import pytest

from tandem import keys
from tandem.config import (
    AnthropicSettings,
    OpenAISettings,
    PrivacySettings,
    Settings,
)


def _settings(**kw: object) -> Settings:
    return Settings(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "openai",
    [
        OpenAISettings(),  # api.openai.com with $OPENAI_API_KEY
        OpenAISettings(preset="groq"),
        OpenAISettings(preset="lmstudio"),  # no key at all
        OpenAISettings(preset="lmstudio", api_key_env="LMS_KEY"),  # to loopback
        OpenAISettings(base_url="https://api.openai.com/v1/"),
    ],
)
def test_keys_to_their_own_host_or_this_machine_need_no_confirmation(
    openai: OpenAISettings,
) -> None:
    assert keys.unconfirmed_host(_settings(openai=openai), "openai") is None
    assert keys.unconfirmed_host(Settings(), "anthropic") is None


def test_a_key_redirected_by_a_base_url_is_refused_naming_the_host() -> None:
    redirected = OpenAISettings(
        base_url="https://collector.example.net:8443/v1",
        api_key_env="AWS_SECRET_ACCESS_KEY",
    )
    why = keys.unconfirmed_host(_settings(openai=redirected), "openai")
    assert why is not None
    assert "collector.example.net:8443" in why and "$AWS_SECRET_ACCESS_KEY" in why
    assert "tandem.privacy.confirmedHosts" in why
    anthropic = AnthropicSettings(base_url="https://gateway.example.org")
    why = keys.unconfirmed_host(_settings(anthropic=anthropic), "anthropic")
    assert why is not None and "gateway.example.org" in why


def test_a_confirmed_host_may_receive_the_key() -> None:
    gateway = OpenAISettings(base_url="https://gw.example.org:8443/v1")
    privacy = PrivacySettings(confirmed_hosts=("gw.example.org:8443",))
    settings = _settings(openai=gateway, privacy=privacy)
    assert keys.unconfirmed_host(settings, "openai") is None
    # The host and port as confirmed, no other port.
    for confirmed in (("gw.example.org",), ("gw.example.org:9000",)):
        other = PrivacySettings(confirmed_hosts=confirmed)
        assert keys.unconfirmed_host(_settings(openai=gateway, privacy=other), "openai")


def test_a_key_never_travels_in_clear_text_off_this_machine() -> None:
    plain = OpenAISettings(base_url="http://api.openai.com/v1")
    why = keys.unconfirmed_host(_settings(openai=plain), "openai")
    assert why is not None and "https" in why
    loopback = OpenAISettings(base_url="http://127.0.0.1:8080/v1")
    assert keys.unconfirmed_host(_settings(openai=loopback), "openai") is None


def test_the_custom_preset_has_no_host_of_its_own() -> None:
    custom = OpenAISettings(
        preset="custom", base_url="https://llm.corp.example/v1", api_key_env="K"
    )
    assert keys.unconfirmed_host(_settings(openai=custom), "openai") is not None
    keyless = OpenAISettings(preset="custom", base_url="https://llm.corp.example/v1")
    assert keys.unconfirmed_host(_settings(openai=keyless), "openai") is None
