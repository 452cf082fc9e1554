"""The text catalogue: every key in every locale, with the same placeholders."""

import string

from salon import responses


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_locale_has_every_key_with_same_placeholders() -> None:
    english = responses.CATALOGUE["en"]
    for locale, texts in responses.CATALOGUE.items():
        assert set(texts) == set(english), locale
        for key, template in texts.items():
            assert _fields(template) == _fields(english[key]), (locale, key)


def test_unknown_locale_falls_back_to_english() -> None:
    assert responses.text("lobby_name", "xx") == "Lobby"
    assert responses.text("lobby_name", "ru") == "Лобби"


def test_every_routing_reason_can_be_explained() -> None:
    # `!why` says why with `route_reason_<reason>`: a new reason needs its text.
    from salon.routing.router import Reason

    for reason in Reason:
        for locale, texts in responses.CATALOGUE.items():
            assert f"route_reason_{reason.value}" in texts, (locale, reason)


def test_api_errors_have_a_status_and_a_message() -> None:
    from salon.responses import API_ERRORS, api_error

    for code, (status, _) in API_ERRORS.items():
        assert 400 <= status < 600, code
    assert api_error("agent_not_found", agent="x", known="a, b")[0] == 404
