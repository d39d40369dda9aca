"""Stage plots_template: the HTML template that `dvc plots show` uses, with vega inline (no params)."""
import os
from pathlib import Path

from fashionclf.core.cli import stage_args, stage_main
from fashionclf.report.vega_offline import VEGA_LITE_VERSION, offline_template


def main():
    args = stage_args(__doc__, "out")
    page = offline_template()
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")  # UTF-8 whatever the locale: the bundle is not ASCII, DVC reads UTF-8
    os.replace(tmp, out)
    print(f"plots_template: {out} ({len(page) / 1e6:.1f} MB, vega-lite {VEGA_LITE_VERSION}, no network needed)")


if __name__ == "__main__":
    stage_main(main)
