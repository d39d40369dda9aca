"""Keep README's results generated: reports/summary.md and reports/review.md (tracked, deterministic)
and, when measured on this machine, reports/timing.md (untracked: timings depend on the machine)."""
from __future__ import annotations

from pathlib import Path

from ..core import paths

START, END = "<!-- results:start -->", "<!-- results:end -->"
TIMING_START, TIMING_END = "<!-- timing:start -->", "<!-- timing:end -->"
REVIEW_START, REVIEW_END = "<!-- review:start -->", "<!-- review:end -->"


def results_block(report=paths.SUMMARY_REPORT, start=START, end=END) -> str:
    text = Path(report).read_text().replace("## ", "#### ")
    return f"{start}\n{text.rstrip()}\n{end}"


def replace_between(text: str, start: str, end: str, block: str) -> str:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + block + tail


def update_readme(readme="README.md", summary=paths.SUMMARY_REPORT, timing="reports/timing.md",
                  review=paths.REVIEW_REPORT) -> int:
    path = Path(readme)
    text = replace_between(path.read_text(), START, END, results_block(summary))
    text = replace_between(text, REVIEW_START, REVIEW_END, results_block(review, REVIEW_START, REVIEW_END))
    if Path(timing).is_file():
        text = replace_between(text, TIMING_START, TIMING_END,
                               f"{TIMING_START}\n{Path(timing).read_text().rstrip()}\n{TIMING_END}")
    path.write_text(text)
    print(f"updated {readme} from {summary}, {review}" + (f" and {timing}" if Path(timing).is_file() else ""))
    return 0


def add_arguments(parser) -> None:
    """No arguments: the README and reports are where the project keeps them."""


def run(args) -> int:
    return update_readme()
