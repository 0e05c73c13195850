"""report.md: its tables stay tables whatever the cells say."""
from __future__ import annotations

import re
from itertools import takewhile

from dsedge.report.render import to_markdown

UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _table(md: str, header: str) -> list[str]:
    lines = md.splitlines()
    i = lines.index(header)
    return list(takewhile(lambda x: x.startswith("|"), lines[i:]))


def test_summary_table_cells_with_pipes_are_escaped(built):
    md = to_markdown(built("qwen2-tiny", "rtn").report)
    rows = _table(md, "| metric | value |")
    assert len(rows) > 8
    # every row has exactly its two cells: 3 unescaped pipes
    assert all(len(UNESCAPED_PIPE.findall(r)) == 3 for r in rows), [r for r in rows if len(UNESCAPED_PIPE.findall(r)) != 3]
    assert any("max \\|Δlogit\\|" in r for r in rows)


def test_a_newline_in_a_value_does_not_end_the_row(built):
    r = dict(built("qwen2-tiny", "rtn").report)
    r["stage_seconds"] = {"load|x": "1\n2"}
    rows = _table(to_markdown(r), "| stage | seconds |")
    assert rows[-1] == "| load\\|x | 1 2 |"
