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
