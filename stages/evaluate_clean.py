"""Stage test_clean@<model>: the fold ensemble on the held-out test set, and its predictions of the
calibration split, which the review queue is fitted on, with each image's statistics, against which
predict and label check that new photos look like these (reads params: evaluate)."""
from fashionclf.core import params
from fashionclf.core.cli import stage_args, stage_main
from fashionclf.core.store import write_atomic, write_json
from fashionclf.data.imaging import image_statistics
from fashionclf.learn.inference import Ensemble, set_threads
from fashionclf.report.evaluation import evaluate, load_test_set, predict_table
from fashionclf.report.tracking import log_confusion


def main():
    args = stage_args(__doc__, "models", "test", "calibration", "metrics", "predictions", "calibration-predictions",
                      "confusion", model=True)
    p = params.load("evaluate")
    set_threads(p.threads)
    ensemble = Ensemble.load(args.models)
    test_set = load_test_set(args.test, ensemble.categories)
    metrics, table = evaluate(ensemble, test_set, p.batch_size, device=p.device)[0.0]
    write_json(args.metrics, metrics)
    write_atomic(args.predictions, table.to_csv(index=False))
    calibration_set = load_test_set(args.calibration, ensemble.categories)
    calibration = predict_table(ensemble, calibration_set, p.batch_size, p.device)
    calibration = calibration.assign(**image_statistics(calibration_set[0].numpy()))  # predict's shift check
    write_atomic(args.calibration_predictions, calibration.to_csv(index=False))
    log_confusion(table["actual"], table["predicted"], args.confusion, f"{args.model}: clean test set")
    print(f"test_clean {args.model}: accuracy {metrics['accuracy']:.4f} {metrics['accuracy_ci95']}, "
          f"macro F1 {metrics['f1']:.4f}")


if __name__ == "__main__":
    stage_main(main)
