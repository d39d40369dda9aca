"""README documents the current results: generated from reports/summary.md and reports/review.md."""
from conftest import ROOT
from fashionclf.readme import END, REVIEW_END, REVIEW_START, START, results_block


def test_readme_results_match_the_committed_report():
    readme = (ROOT / "README.md").read_text()
    assert START in readme and END in readme
    assert results_block(ROOT / "reports/summary.md") in readme, "run: python -m fashionclf readme"
    assert results_block(ROOT / "reports/review.md", REVIEW_START, REVIEW_END) in readme, \
        "run: python -m fashionclf readme"


def test_readme_gives_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -r requirements.lock -e . && dvc repro" in readme
    assert "pip install -q -r requirements.lock -e ." in (ROOT / ".ci/run").read_text()
    assert "python -m pytest -q" in readme
    assert "python -m pytest -q" in (ROOT / ".ci/run").read_text()
