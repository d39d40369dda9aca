"""Stage aggregate: the model comparison (metrics/summary.json, reports/summary.md), the best model
chosen on out-of-fold CV results, and one robustness plot for all models (reads params: train.models)."""
from fashionclf.core import params
from fashionclf.core.cli import stage_args, stage_main
from fashionclf.core.store import write_atomic, write_json
from fashionclf.report.aggregate import choose_best, collect, robustness_curves, summary_markdown
from fashionclf.report.plotting import plot_robustness


def main():
    args = stage_args(__doc__, "cv", "test-clean", "test-noise", "oof", "curves", "summary", "report", "best",
                      "robustness-png")
    models = list(params.load("train").models)
    summary = collect(models, args.cv, args.test_clean, args.test_noise)
    choice = choose_best(summary, args.oof)
    summary = {m: summary[m] for m in choice["ranking"]}
    write_json(args.summary, {"best_model": choice["best_model"], "models": summary})
    write_json(args.best, choice)
    report = summary_markdown(summary, choice)
    write_atomic(args.report, report)
    plot_robustness(robustness_curves(choice["ranking"], args.curves), args.robustness_png)
    print(report)


if __name__ == "__main__":
    stage_main(main)
