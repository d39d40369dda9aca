"""Stage test_noise@<model>: the test set under Gaussian noise, plus a robustness curve
(reads params: noise, evaluate)."""
import sys

from fashionclf import params
from fashionclf.cli import stage_main
from fashionclf.evaluation import evaluate_test_set


def main():
    name = sys.argv[1]
    noise, evaluate = params.load("noise"), params.load("evaluate")
    report = evaluate_test_set(name, evaluate.batch_size, sigma=noise.sigma, seed=noise.seed, split="test_noise",
                               curve_sigmas=noise.sigmas)
    print(f"test_noise {name}: sigma {noise.sigma}: accuracy {report['accuracy']:.4f}")


if __name__ == "__main__":
    stage_main(main)
