"""Each insight kind's doc (docs/insights/KIND.md) tables every profile key the kind takes, with
the name it is compiled to: a JSON written by hand, or read off a board, maps back by it."""
import pathlib
import re

import pytest

from firmware.profile.insights import INSIGHTS

DOCS = pathlib.Path(__file__).parent.parent / "docs" / "insights"


@pytest.mark.parametrize("kind", sorted(INSIGHTS))
def test_an_insights_doc_tables_each_key_and_its_compiled_name(kind):
    text = (DOCS / ("%s.md" % kind)).read_text()
    header = text.index("| key | compiled | default | meaning |")
    rows = re.findall(r"^\| `([a-z_]+)` \| `([a-z_0-9]+)`", text[header:].split("\n\n", 1)[0],
                      re.M)
    fields = INSIGHTS[kind]["fields"]
    assert sorted(rows) == sorted((key, compiled) for key, compiled, _, _ in fields)
