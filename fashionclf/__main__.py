"""The ``fashionclf`` command: init, predict, label, gate, preset, readme, fingerprint."""
from __future__ import annotations

import argparse
import importlib
import sys

# each command's module owns its arguments (add_arguments) and its run; only the chosen one is
# imported, so `fashionclf gate` does not pay for torch
COMMANDS = {  # name: (module, help)
    "gate": ("fashionclf.ci.gate", "fail (exit 1) if workspace metrics regressed against a git revision"),
    "predict": ("fashionclf.serve.predict", "label new product images with a trained model"),
    "label": ("fashionclf.serve.label", "label a whole catalogue on Ray Data (a local Ray, or a cluster)"),
    "init": ("fashionclf.serve.init", "write params.yaml for a folder of photos, one sub-folder per category"),
    "readme": ("fashionclf.report.readme", "copy reports/summary.md into README.md between its markers"),
    "preset": ("fashionclf.core.preset", "apply a named configuration (configs/*.yaml) to params.yaml"),
    "fingerprint": ("fashionclf.ci.platform", "print this platform's fingerprint (CPU, ISA flags, torch, threads)"),
}


def main(argv=None) -> int:
    from .core.commands import run_command

    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = argparse.ArgumentParser(prog="fashionclf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    parsers = {name: sub.add_parser(name, help=help_) for name, (_, help_) in COMMANDS.items()}
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen in COMMANDS:
        module = importlib.import_module(COMMANDS[chosen][0])
        module.add_arguments(parsers[chosen])
    args = parser.parse_args(argv)  # exits 2 with usage for no or an unknown command
    return run_command(module.run, args)


if __name__ == "__main__":
    sys.exit(main())
