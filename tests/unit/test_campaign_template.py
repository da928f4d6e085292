"""A campaign's text template names columns and nothing else: no format spec (a width of
millions of characters per row), no conversion, no attribute or index access."""

from __future__ import annotations

import pytest

from worker.campaigns import template_fields
from worker.errors import ValidationError


def test_plain_placeholders_name_their_columns() -> None:
    assert template_fields("[QC] Chao {name}, ma {code} giam {pct}%") == ["name", "code", "pct"]
    assert template_fields("no placeholder, {{literal}} braces") == []


@pytest.mark.parametrize("template", [
    "{name:>99999999}",  # a format spec: one row would become 100 MB
    "{name!r}",
    "{name.__class__}",
    "{name[0]}",
    "{0}",
    "{}",
    "{name",
])
def test_anything_but_a_column_name_is_refused(template: str) -> None:
    with pytest.raises(ValidationError) as refused:
        template_fields(template)
    assert refused.value.field == "text"
