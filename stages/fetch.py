"""Stage fetch: the raw images as one zip archive --out (reads params: fetch)."""
from fashionclf.core import params
from fashionclf.core.cli import stage_args, stage_main
from fashionclf.core.store import write_json
from fashionclf.data.fetch import fetch


def main():
    args = stage_args(__doc__, "out", "report")
    p = params.load("fetch")
    report = fetch(p.source, p.per_class, args.out)
    write_json(args.report, report)
    print(f"fetch: {report['files']} files, skipped {report['skipped']}")


if __name__ == "__main__":
    stage_main(main)
