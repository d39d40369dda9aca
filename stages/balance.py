"""Stage balance: test hold-out and per-category balancing (reads params: balance)."""
from fashionclf import params
from fashionclf.balance import balance
from fashionclf.cli import stage_main
from fashionclf.store import write_json


def main():
    report = balance(params.load("balance"), "data/clean", "data/labels.csv", "data/balance")
    write_json("metrics/balance.json", report)
    print(f"balance: {report}")


if __name__ == "__main__":
    stage_main(main)
