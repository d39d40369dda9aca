"""Keep README's results generated: reports/summary.md (tracked, deterministic) and, when measured
on this machine, reports/timing.md (untracked: timings depend on the machine)."""
from __future__ import annotations

from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"
TIMING_START, TIMING_END = "<!-- timing:start -->", "<!-- timing:end -->"


def results_block(summary="reports/summary.md") -> str:
    text = Path(summary).read_text().replace("## ", "#### ")
    return f"{START}\n{text.rstrip()}\n{END}"


def replace_between(text: str, start: str, end: str, block: str) -> str:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + block + tail


def update_readme(readme="README.md", summary="reports/summary.md", timing="reports/timing.md") -> int:
    path = Path(readme)
    text = replace_between(path.read_text(), START, END, results_block(summary))
    if Path(timing).is_file():
        text = replace_between(text, TIMING_START, TIMING_END,
                               f"{TIMING_START}\n{Path(timing).read_text().rstrip()}\n{TIMING_END}")
    path.write_text(text)
    print(f"updated {readme} from {summary}" + (f" and {timing}" if Path(timing).is_file() else ""))
    return 0
