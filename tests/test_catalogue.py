"""The pages' message catalogue: every message the templates and page modules use has a
Chinese translation, and the catalogue keeps no message that is no longer used."""

from __future__ import annotations

import re

from babel.messages.pofile import read_po

from pos_gateway.web.catalogue import extracted_messages
from pos_gateway.web.i18n import CATALOGUE, ZH, translations

_PLACEHOLDER = re.compile(r"%\(\w+\)s")


def _catalogue():
    with CATALOGUE.open("rb") as fh:
        return read_po(fh, locale=ZH)


def test_every_message_of_the_pages_is_translated() -> None:
    used = extracted_messages()
    catalogue = _catalogue()
    untranslated = sorted(m for m in used if not (catalogue.get(m) and catalogue.get(m).string))
    assert len(used) > 150
    assert untranslated == [], f"run scripts/i18n.py and translate: {untranslated}"


def test_the_catalogue_has_no_stale_messages_and_keeps_the_placeholders() -> None:
    used = extracted_messages()
    catalogue = _catalogue()
    stale = sorted(m.id for m in catalogue if m.id and m.id not in used)
    assert stale == []
    for message in catalogue:
        if message.id:
            assert sorted(_PLACEHOLDER.findall(message.id)) == sorted(
                _PLACEHOLDER.findall(message.string)
            ), message.id
            assert not message.fuzzy, message.id


def test_the_compiled_catalogue_translates() -> None:
    zh = translations(ZH)
    assert zh.gettext("Log in") == "登录"
    assert zh.gettext("ID number") == "身份证号"
    assert translations("en").gettext("Log in") == "Log in"
