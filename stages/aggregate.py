"""Stage aggregate: metrics/summary.json and reports/summary.md for every model (reads params: train.models).

Timings (training seconds, CPU latency) depend on the machine, so they go to the untracked
reports/timing.{json,md}; everything DVC tracks here is deterministic.
"""
from fashionclf import params
from fashionclf.aggregate import best_model, collect, measure_timing, summary_markdown, timing_markdown
from fashionclf.cli import stage_main
from fashionclf.store import write_atomic, write_json


def main():
    models = list(params.load("train").models)
    summary = collect(models)
    best = best_model(summary)
    write_json("metrics/summary.json", {"best_model": best, "models": summary})
    write_json("reports/best_model.json", {"best_model": best, "chosen_by": "clean-test macro F1"})
    write_atomic("reports/summary.md", summary_markdown(summary, best))
    timing = measure_timing(models)
    write_json("reports/timing.json", timing)
    write_atomic("reports/timing.md", timing_markdown(timing))
    print(summary_markdown(summary, best))
    print(timing_markdown(timing))


if __name__ == "__main__":
    stage_main(main)
