"""Stage clean: decode, canonicalise, de-duplicate (reads params: clean)."""
from fashionclf import params
from fashionclf.cli import stage_main
from fashionclf.clean import clean
from fashionclf.store import write_json


def main():
    p = params.load("clean")
    report = clean("data/raw", p.size, p.min_side, p.max_pixels, "data/clean", "data/clean_dropped.csv")
    write_json("metrics/clean.json", report)
    print(f"clean: {report}")


if __name__ == "__main__":
    stage_main(main)
