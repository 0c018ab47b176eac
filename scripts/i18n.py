"""Update the pages' message catalogue from the templates and page modules:

    .venv/bin/python scripts/i18n.py

New msgids are added with an empty translation (the catalogue test then fails until
someone translates them); msgids no longer used are dropped; translations are kept."""

from __future__ import annotations

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

from pos_gateway.web.catalogue import extracted_messages
from pos_gateway.web.i18n import CATALOGUE, ZH


def main() -> None:
    with CATALOGUE.open("rb") as fh:
        old = read_po(fh, locale=ZH)
    fresh = Catalog(locale=ZH, project="pos-gateway pages", charset="utf-8")
    for msgid, places in sorted(extracted_messages().items()):
        existing = old.get(msgid)
        fresh.add(
            msgid,
            existing.string if existing is not None else "",
            locations=[(p.rsplit(":", 1)[0], int(p.rsplit(":", 1)[1])) for p in places],
        )
    with CATALOGUE.open("wb") as fh:
        write_po(fh, fresh, width=100, sort_output=True)
    missing = [m.id for m in fresh if m.id and not m.string]
    print(f"{len(fresh)} messages, {len(missing)} untranslated")


if __name__ == "__main__":
    main()
