"""Stage clean: decode, canonicalise, de-duplicate (reads params: clean)."""
from fashionclf.core import params
from fashionclf.core.cli import stage_args, stage_main
from fashionclf.core.store import write_json
from fashionclf.data.clean import clean


def main():
    args = stage_args(__doc__, "raw", "out", "dropped", "metrics")
    p = params.load("clean")
    report = clean(args.raw, p.canvas_size, p.min_side, p.max_pixels, args.out, args.dropped)
    write_json(args.metrics, report)
    print(f"clean: {report}")


if __name__ == "__main__":
    stage_main(main)
