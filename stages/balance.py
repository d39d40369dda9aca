"""Stage balance: test hold-out and per-category balancing (reads params: balance)."""
from fashionclf.core import params
from fashionclf.core.cli import stage_args, stage_main
from fashionclf.core.store import write_json
from fashionclf.data.balance import balance


def main():
    args = stage_args(__doc__, "clean", "labels", "out", "metrics")
    report = balance(params.load("balance"), args.clean, args.labels, args.out)
    write_json(args.metrics, report)
    print(f"balance: {report}")


if __name__ == "__main__":
    stage_main(main)
