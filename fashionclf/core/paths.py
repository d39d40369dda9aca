"""The pipeline outputs that the commands read, as dvc.yaml's cmd lines name them. dvc.yaml is the
one place that names paths; this module mirrors the few that serving code needs, and
tests/test_dvc_graph.py keeps the two equal."""
MODELS = "models"                                                    # cv_train --models models/<model>
BEST_MODEL = "reports/best_model.json"                               # aggregate --best
SUMMARY_REPORT = "reports/summary.md"                                # aggregate --report
REVIEW_REPORT = "reports/review.md"                                  # review --report
CALIBRATION_PREDICTIONS = "plots/predictions/calibration/{model}.csv"  # test_clean --calibration-predictions
EXPORT = "export"                                                    # export --out
EXPORTED_MODEL = f"{EXPORT}/model.onnx"                              # learn/onnx_runner.py's ONNX_FILE in it
