"""Named configurations applied to params.yaml in one command: `python -m fashionclf preset FILE`.

A preset is a YAML file of dotted overrides (``overrides: {train.batch_size: 256, ...}``). Every
section is validated with the overrides applied before anything is written, so a bad preset leaves
params.yaml as it was. ruamel.yaml (DVC's own YAML library) keeps params.yaml's comments; without it
(a machine without DVC) PyYAML writes the values alone.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import yaml

from .errors import ParamError
from .params import PARAMS_FILE, SECTIONS, parse


def read_overrides(preset: Path | str) -> dict:
    doc = yaml.safe_load(Path(preset).read_text()) or {}
    overrides = doc.get("overrides")
    if not isinstance(overrides, dict) or not overrides:
        raise ParamError(f"{preset}: needs a mapping 'overrides' of dotted params.yaml keys to values")
    return overrides


def set_dotted(doc, dotted: str, value, source: str) -> None:
    node = doc
    *parents, last = dotted.split(".")
    for key in parents:
        if not isinstance(node, dict) or key not in node:
            raise ParamError(f"{source}: {dotted} names no params.yaml key ({key!r} missing)")
        node = node[key]
    if last not in node and len(parents) != 2:  # new entries only under train.models.<name>
        raise ParamError(f"{source}: {dotted} names no params.yaml key ({last!r} missing)")
    node[last] = value


def apply_preset(preset: Path | str, params_file: Path | str = PARAMS_FILE) -> dict:
    """Write ``preset``'s overrides into ``params_file``; return them."""
    overrides = read_overrides(preset)
    plain = yaml.safe_load(Path(params_file).read_text())
    for dotted, value in overrides.items():
        set_dotted(plain, dotted, value, str(preset))
    for section in SECTIONS:  # raises ParamError naming the key; nothing written yet
        parse(section, plain[section])
    try:
        from ruamel.yaml import YAML
    except ImportError:
        text = yaml.safe_dump(plain, sort_keys=False)
    else:
        ruamel = YAML()
        ruamel.preserve_quotes, ruamel.width = True, 120
        ruamel.indent(mapping=2, sequence=4, offset=2)
        doc = ruamel.load(Path(params_file).read_text())
        for dotted, value in overrides.items():
            set_dotted(doc, dotted, value, str(preset))
        buffer = io.StringIO()
        ruamel.dump(doc, buffer)
        text = buffer.getvalue()
    tmp = Path(f"{params_file}.tmp")
    tmp.write_text(text)
    os.replace(tmp, params_file)
    return overrides


def run_preset(preset: str, params_file: str = str(PARAMS_FILE)) -> int:
    overrides = apply_preset(preset, params_file)
    print(f"{params_file}: {len(overrides)} values from {preset}: "
          + ", ".join(f"{k}={v}" for k, v in overrides.items()))
    return 0


def add_arguments(parser) -> None:
    parser.add_argument("file", help="a preset, e.g. configs/gpu_reference.yaml")
    parser.add_argument("--params", default=str(PARAMS_FILE))


def run(args) -> int:
    return run_preset(args.file, args.params)
