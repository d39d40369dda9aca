"""Stage test_clean@<model>: the fold ensemble on the held-out test set (reads params: evaluate)."""
import sys

from fashionclf import params
from fashionclf.cli import stage_main
from fashionclf.evaluation import evaluate_test_set


def main():
    name = sys.argv[1]
    p = params.load("evaluate")
    report = evaluate_test_set(name, p.batch_size, sigma=0.0, seed=0, split="test_clean")
    print(f"test_clean {name}: accuracy {report['accuracy']:.4f}, macro F1 {report['f1']:.4f}")


if __name__ == "__main__":
    stage_main(main)
