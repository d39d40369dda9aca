"""Run dvc.yaml's stage commands in order, without DVC, timing each: for a machine that has the
project's Python dependencies but not DVC (the GPU machine of bench/gpu_reference.sh).

    python tools/run_stages.py [--only cv_train test_clean ...] [--timings OUT.json]

`foreach` stages expand over their list (train.models), ${key} becomes each entry, as DVC does.
Nothing is skipped or cached: every stage runs. dvc.yaml stays the one place that names the paths.
"""
import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml


def resolve(expression: str, params: dict):
    node = params
    for part in expression.split("."):
        node = node[part]
    return node


def expanded_commands(dvc_yaml: Path, params_yaml: Path) -> list[tuple[str, str]]:
    """[(stage name, command)] in dvc.yaml's order (which is a valid run order for this project)."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    params = yaml.safe_load(params_yaml.read_text())
    commands = []
    for name, spec in stages.items():
        if "foreach" in spec:
            items = resolve(spec["foreach"].strip("${} "), params)
            for key in items:
                commands.append((f"{name}@{key}", " ".join(spec["do"]["cmd"].split()).replace("${key}", key)))
        else:
            commands.append((name, " ".join(spec["cmd"].split())))
    return commands


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", help="stage names (without @model) to run")
    parser.add_argument("--timings", help="write {stage: seconds} here")
    args = parser.parse_args()
    timings, start = {}, time.perf_counter()
    for stage, cmd in expanded_commands(Path("dvc.yaml"), Path("params.yaml")):
        if args.only and stage.split("@")[0] not in args.only:
            continue
        print(f"=== {stage}: {cmd}", flush=True)
        t = time.perf_counter()
        argv = shlex.split(cmd)
        if argv[0] == "python":
            argv[0] = sys.executable
        result = subprocess.run(argv)
        timings[stage] = round(time.perf_counter() - t, 1)
        if result.returncode != 0:
            print(f"{stage} failed with exit {result.returncode} after {timings[stage]} s", file=sys.stderr)
            break
    timings["total"] = round(time.perf_counter() - start, 1)
    print(json.dumps(timings, indent=1))
    if args.timings:
        Path(args.timings).write_text(json.dumps(timings, indent=1) + "\n")
    return 0 if result.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
