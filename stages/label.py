"""Stage label: categories from path rules and corrections (reads params: label)."""
from fashionclf import params
from fashionclf.cli import stage_main
from fashionclf.label import label
from fashionclf.store import write_json


def main():
    report = label(params.load("label"), "data/clean", "data/labels.csv", "data/unmatched.csv")
    write_json("metrics/label.json", report)
    print(f"label: {report}")


if __name__ == "__main__":
    stage_main(main)
