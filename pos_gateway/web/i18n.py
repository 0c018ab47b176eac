"""Languages of the pages: Simplified Chinese by default, English when Accept-Language
ranks English above Chinese. Messages are English msgids translated through the gettext
catalogue in locale/; the .po is compiled in memory at first use, so a fresh checkout
needs no build step."""

from __future__ import annotations

import functools
import io
from gettext import NullTranslations
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

ZH, EN = "zh_CN", "en"
LOCALE_DIR = Path(__file__).parent / "locale"
CATALOGUE = LOCALE_DIR / ZH / "LC_MESSAGES" / "messages.po"


def N_(message: str) -> str:
    """Mark a message for the catalogue; translated where it is shown."""
    return message


def negotiate(accept_language: str) -> str:
    """English only when the header ranks some English above every Chinese; ties go to
    the one named first."""
    best: dict[str, tuple[float, int]] = {}
    for position, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        family = tag.split("-")[0]
        if family in ("en", "zh") and quality > 0:
            rank = (quality, -position)
            if family not in best or rank > best[family]:
                best[family] = rank
    if "en" in best and ("zh" not in best or best["en"] > best["zh"]):
        return EN
    return ZH


@functools.cache
def translations(language: str) -> NullTranslations:
    if language == EN:
        return NullTranslations()  # the msgids are the English text
    with CATALOGUE.open("rb") as po:
        catalog = read_po(po, locale=ZH)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)
