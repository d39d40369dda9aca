"""Stage balance: test hold-out and per-category balancing (reads params: balance)."""
from fashionclf import params
from fashionclf.balance import balance
from fashionclf.cli import stage_args, stage_main
from fashionclf.store import write_json


def main():
    args = stage_args(__doc__, "clean", "labels", "out", "metrics")
    report = balance(params.load("balance"), args.clean, args.labels, args.out)
    write_json(args.metrics, report)
    print(f"balance: {report}")


if __name__ == "__main__":
    stage_main(main)
