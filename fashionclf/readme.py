"""Keep README's results section generated from reports/summary.md (and the local timing, if measured)."""
from __future__ import annotations

from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"


def results_block(summary="reports/summary.md") -> str:
    text = Path(summary).read_text().replace("## ", "#### ")
    return f"{START}\n{text.rstrip()}\n{END}"


def update_readme(readme="README.md", summary="reports/summary.md") -> int:
    path = Path(readme)
    text = path.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(head + results_block(summary) + tail)
    print(f"updated {readme} from {summary}")
    return 0
