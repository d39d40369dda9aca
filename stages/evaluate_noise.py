"""Stage test_noise@<model>: the test set under Gaussian noise, and the robustness curve from
sigma 0 (the clean predictions) to the largest noise.sigmas, whose levels other than noise.sigma
run on a stratified subset of noise.curve_max_images test images (reads params: noise, evaluate)."""
import pandas as pd

from fashionclf.core import params
from fashionclf.core.cli import stage_args, stage_main
from fashionclf.core.scoring import metrics_from_predictions
from fashionclf.core.store import write_atomic, write_json
from fashionclf.learn.inference import Ensemble, set_threads
from fashionclf.report.evaluation import curve_row, evaluate, load_test_set
from fashionclf.report.tracking import log_confusion


def main():
    args = stage_args(__doc__, "models", "test", "clean-predictions", "metrics", "predictions", "confusion",
                      "curve", model=True)
    noise, evaluate_params = params.load("noise"), params.load("evaluate")
    set_threads(evaluate_params.threads)
    ensemble = Ensemble.load(args.models)
    test_set = load_test_set(args.test, ensemble.categories)
    clean = pd.read_csv(args.clean_predictions, keep_default_na=False)
    results = {0.0: (metrics_from_predictions(clean, ensemble.categories), clean)}
    if noise.sigma > 0:
        results |= evaluate(ensemble, test_set, evaluate_params.batch_size, [noise.sigma], noise.seed,
                            device=evaluate_params.device)
    curve_only = sorted(set(noise.sigmas) - {0.0, noise.sigma})
    results |= evaluate(ensemble, test_set, evaluate_params.batch_size, curve_only, noise.seed,
                        noise.curve_max_images, evaluate_params.device)
    metrics, table = results[noise.sigma]
    write_json(args.metrics, {**metrics, "sigma": noise.sigma})
    write_atomic(args.predictions, table.to_csv(index=False))
    log_confusion(table["actual"], table["predicted"], args.confusion,
                  f"{args.model}: test set with Gaussian noise, sigma {noise.sigma}")
    write_atomic(args.curve, pd.DataFrame([curve_row(s, results[s][0]) for s in sorted(results)]).to_csv(index=False))
    print(f"test_noise {args.model}: sigma {noise.sigma}: accuracy {metrics['accuracy']:.4f} {metrics['accuracy_ci95']}")


if __name__ == "__main__":
    stage_main(main)
