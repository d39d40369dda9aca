"""Stage label: categories from path rules and corrections (reads params: label)."""
from fashionclf import params
from fashionclf.cli import stage_args, stage_main
from fashionclf.label import label
from fashionclf.store import write_json


def main():
    args = stage_args(__doc__, "clean", "corrections", "out", "unmatched", "metrics")
    report = label(params.load("label"), args.clean, args.corrections, args.out, args.unmatched)
    write_json(args.metrics, report)
    print(f"label: {report}")


if __name__ == "__main__":
    stage_main(main)
