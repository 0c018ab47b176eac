"""The messages the pages use, extracted from the templates and the page modules (for
the catalogue's completeness test and for updating the .po: see scripts/i18n.py)."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir

WEB_DIR = Path(__file__).parent
METHOD_MAP = [
    ("templates/**.html", "jinja2.ext:babel_extract"),
    ("*.py", "python"),
]
OPTIONS = {"templates/**.html": {"autoescape": "true"}}


def extracted_messages() -> dict[str, list[str]]:
    """msgid -> where it is used."""
    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(WEB_DIR), METHOD_MAP, OPTIONS, keywords={"_": None, "N_": None}
    ):
        if isinstance(message, str) and message:
            found.setdefault(message, []).append(f"{filename}:{lineno}")
    return found
