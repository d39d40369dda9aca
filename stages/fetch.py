"""Stage fetch: raw images under data/raw (reads params: fetch)."""
from fashionclf import params
from fashionclf.cli import stage_main
from fashionclf.fetch import fetch
from fashionclf.store import write_json


def main():
    p = params.load("fetch")
    report = fetch(p.source, p.per_class, "data/raw")
    write_json("data/fetch_report.json", report)
    print(f"fetch: {report['files']} files, skipped {report['skipped']}")


if __name__ == "__main__":
    stage_main(main)
