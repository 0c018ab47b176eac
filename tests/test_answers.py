"""Operator and cardholder answers are typed structs: the document names a struct for
each, and a handler's result that is not its documented shape is never sent."""

from __future__ import annotations

import msgspec
import pytest

from pos_gateway.http.answers import IssuedCard, Status, render

from .test_openapi import DOC


def _answer_schemas(prefix: str) -> dict[str, object]:
    return {
        f"{method.upper()} {path}": operation["responses"][status]["content"]["application/json"][
            "schema"
        ]
        for path, item in DOC["paths"].items()
        if path.startswith(prefix)
        for method, operation in item.items()
        for status in operation["responses"]
        if status.startswith("2")
    }


@pytest.mark.parametrize("prefix", ["/v1/admin/", "/v1/me"])
def test_every_operator_and_cardholder_answer_is_a_named_struct(prefix: str) -> None:
    schemas = _answer_schemas(prefix)

    assert len(schemas) > 10
    inline = {op: s for op, s in schemas.items() if set(s) != {"$ref"}}  # type: ignore[arg-type]
    assert inline == {}
    for schema in schemas.values():
        name = schema["$ref"].rsplit("/", 1)[1]  # type: ignore[index]
        assert DOC["components"]["schemas"][name]["additionalProperties"] is False


def test_a_result_with_a_field_more_is_refused_not_sent() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `pin_hash`"):
        render({"status": "lost", "pin_hash": "x"}, Status)


def test_a_result_missing_a_documented_field_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="missing required field `expires_on`"):
        render({"pan": "6217000000000000018", "account_id": 1}, IssuedCard)


def test_an_answer_renders_once_without_its_unset_fields() -> None:
    response = render(
        {"pan": "6217000000000000018", "account_id": 7, "expires_on": "2030-01-31"}, IssuedCard
    )

    assert msgspec.json.decode(response.body) == {  # type: ignore[arg-type]
        "pan": "6217000000000000018",
        "account_id": 7,
        "expires_on": "2030-01-31",
    }
