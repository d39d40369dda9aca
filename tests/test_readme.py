"""README documents the current results: generated from reports/summary.md and reports/review.md."""
import re

from conftest import ROOT, cli
from fashionclf.report.readme import END, REVIEW_END, REVIEW_START, START, results_block


def test_readme_results_match_the_committed_report():
    readme = (ROOT / "README.md").read_text()
    assert START in readme and END in readme
    assert results_block(ROOT / "reports/summary.md") in readme, "run: python -m fashionclf readme"
    assert results_block(ROOT / "reports/review.md", REVIEW_START, REVIEW_END) in readme, \
        "run: python -m fashionclf readme"


def test_readme_is_a_front_door_and_the_project_stands_alone():
    """At most 250 lines (depth lives in docs/), and every relative path that climbs a folder
    ("../x") in the docs, benches, package, stages and CI script stays inside the repository."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "bench").glob("*.py"),
             *(ROOT / "fashionclf").rglob("*.py"), *(ROOT / "stages").glob("*.py"), ROOT / ".ci/run"]
    outside = [f"{f.relative_to(ROOT)}: {path}" for f in files
               for path in re.findall(r"\.\./[\w./-]+", f.read_text())
               if not (f.parent / path).resolve().is_relative_to(ROOT)]
    assert not outside


def test_readme_gives_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -r requirements.lock -e . && dvc repro" in readme
    assert "pip install -q -r requirements.lock -e ." in (ROOT / ".ci/run").read_text()
    assert "python -m pytest -q" in readme
    assert "python -m pytest -q" in (ROOT / ".ci/run").read_text()


def readme_commands():
    """Command lines in the README's code blocks (a trailing comment dropped)."""
    text = (ROOT / "README.md").read_text()
    lines = [l.split("  #")[0].strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)
             for l in block.splitlines()]
    return [part.strip() for l in lines for part in l.split("&&") if part.strip()]


def test_readme_commands_exist_with_the_flags_they_use():
    """Each `fashionclf <command>` the README shows answers --help and knows its flags (the entry point
    run in-process: the help text is the same, without a torch import per command); each bench
    script it names exists and defines its flags."""
    checked = 0
    for line in readme_commands():
        words = line.split()
        flags = [w.split("=")[0] for w in words if w.startswith("--")]
        if "fashionclf" in words[:3]:
            command = words[words.index("fashionclf") + 1]
            help_text = cli(ROOT, command, "--help")
            assert help_text.returncode == 0, line
            assert all(f in help_text.stdout for f in flags), (line, help_text.stdout)
            checked += 1
        script = next((w for w in words if re.fullmatch(r"bench/\w+\.(py|sh)", w)), None)
        if script:
            source = (ROOT / script).read_text()
            assert all(f in source for f in flags), line
            checked += 1
    assert checked >= 10
