"""Stage label: categories from path rules and corrections (reads params: label)."""
from fashionclf.core import params
from fashionclf.core.cli import stage_args, stage_main
from fashionclf.core.store import write_json
from fashionclf.data.label import label


def main():
    args = stage_args(__doc__, "clean", "corrections", "out", "unmatched", "metrics")
    report = label(params.load("label"), args.clean, args.corrections, args.out, args.unmatched)
    write_json(args.metrics, report)
    print(f"label: {report}")


if __name__ == "__main__":
    stage_main(main)
