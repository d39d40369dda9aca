"""The DVC graph is complete: every stage lists each project module it imports (directly or through
another module), and every declared param is part of DVC's run-cache key."""
import ast
import copy
import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name, or None for anything outside the project."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (function-level imports too)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


def import_closure(entry: Path) -> set[str]:
    """Project files reachable from ``entry`` by imports, as paths relative to the project root."""
    seen, todo = set(), [entry]
    while todo:
        path = todo.pop()
        rel = path.relative_to(ROOT).as_posix()
        if rel in seen:
            continue
        seen.add(rel)
        for name in imported_modules(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
                found = module_file(".".join(parts[:i]))
                if found is not None:
                    todo.append(found)
    return seen


def stage_entry(cmd: str) -> Path:
    module = re.search(r"python -m (\S+)", cmd).group(1)
    return module_file(module)


STAGES = sorted(DVC_YAML["stages"])


@pytest.mark.parametrize("stage", STAGES)
def test_stage_deps_cover_its_import_closure(stage):
    spec = DVC_YAML["stages"][stage]
    spec = spec.get("do", spec)
    closure = {p for p in import_closure(stage_entry(spec["cmd"])) if not p.endswith("__init__.py")
               or Path(ROOT / p).stat().st_size > 0}
    deps = set(spec.get("deps", []))
    missing = sorted(closure - deps)
    assert not missing, f"dvc.yaml stage {stage} imports but does not list: {missing}"
    stale = sorted(d for d in deps if d.endswith(".py") and d not in closure)
    assert not stale, f"dvc.yaml stage {stage} lists modules it does not import: {stale}"


def param_leaves(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from param_leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def declared_params(stage: str) -> list[str]:
    spec = DVC_YAML["stages"][stage]
    spec = spec.get("do", spec)
    names = []
    for entry in spec.get("params", []):
        names += [entry] if isinstance(entry, str) else list(entry)
    return [n.replace(".${key}", "") for n in names]


def changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    return [*value, value[-1]] if isinstance(value, list) and value else ["x"]


def test_every_param_changes_dvcs_run_cache_key():
    """DVC hashes a stage's lock entry with dict_sha256, leaving out keys named size or nfiles
    (treeverse/dvc#10296): a param so named would let the run cache restore outputs built with
    another value. Change each leaf of params.yaml and check the key DVC computes changes."""
    from dvc.stage.cache import _get_cache_hash

    for dotted, value in param_leaves(PARAMS):
        before = {"cmd": "x", "params": {"params.yaml": PARAMS}}
        after = copy.deepcopy(before)
        node = after["params"]["params.yaml"]
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = changed(value)
        assert _get_cache_hash(before) != _get_cache_hash(after), f"{dotted} escapes DVC's run-cache key"


def test_stages_declare_every_params_section_they_read():
    sections = {"fetch": ["fetch"], "clean": ["clean"], "label": ["label"], "balance": ["balance"],
                "augment": ["augment"], "cv_train": ["train"], "test_clean": ["evaluate"],
                "test_noise": ["evaluate", "noise"], "aggregate": ["train.models"], "export": []}
    for stage, expected in sections.items():
        declared = declared_params(stage)
        for section in expected:
            assert any(d == section or d.startswith(section + ".") for d in declared), (stage, section)
        source = stage_entry(DVC_YAML["stages"][stage].get("do", DVC_YAML["stages"][stage])["cmd"]).read_text()
        loaded = set(re.findall(r'params\.load\("(\w+)"\)', source))
        assert loaded == {s.split(".")[0] for s in expected}, (stage, loaded)


def set_param(project, dotted, value):
    doc = yaml.safe_load((project / "params.yaml").read_text())
    node = doc
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    (project / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def test_clean_params_rerun_clean_and_the_run_cache_restores_the_reverted_outputs(tmp_path):
    """For real, through DVC: a changed param reruns the stage; reverting it brings back (from the
    run cache) outputs built with the reverted value, not the last ones. canvas_size is the key that
    was once named size and escaped the run cache; every other key is covered by the hash test."""
    import numpy as np
    from conftest import make_project, run

    project = make_project(tmp_path / "repo", {"fetch.per_class": 2})
    run(["dvc", "repro", "clean"], project)
    original = (project / "data/clean/images.npy").read_bytes()
    for dotted, value in (("clean.canvas_size", 20), ("clean.min_side", 29)):
        default = PARAMS["clean"][dotted.split(".")[1]]
        set_param(project, dotted, value)
        out = run(["dvc", "repro", "clean"], project).stdout
        assert "Running stage 'clean'" in out, (dotted, out)
        assert (project / "data/clean/images.npy").read_bytes() != original, dotted
        set_param(project, dotted, default)
        out = run(["dvc", "repro", "clean"], project).stdout
        assert "Stage 'clean' is cached - skipping run" in out, (dotted, out)
        restored = np.load(project / "data/clean/images.npy")
        assert restored.shape[1:] == (PARAMS["clean"]["canvas_size"],) * 2 + (3,)
        assert (project / "data/clean/images.npy").read_bytes() == original, dotted


def test_a_training_param_set_back_restores_training_and_test_stages_from_the_run_cache(tiny_project, tmp_path):
    """train.seed 42 -> 43 -> 42: the second repro runs no command; cv_train and the test stages come
    back from DVC's run cache (their git-kept outputs are declared metrics and plots, not plain
    outs marked cache: false, which would turn the run cache off), byte for byte."""
    import shutil

    from conftest import TINY, run

    model = list(TINY["train.models"])[0]
    project = tmp_path / "repo"
    shutil.copytree(tiny_project, project, symlinks=True)  # its .dvc/cache holds the run cache of its repro
    chain = [f"cv_train@{model}", f"test_clean@{model}", f"test_noise@{model}"]

    def outputs():
        roots = [project / "models" / model, project / "metrics", project / "plots"]
        return {p.relative_to(project): p.read_bytes() for root in roots for p in sorted(root.rglob("*"))
                if p.is_file() and model in str(p)}

    before = outputs()
    assert len(before) > 10
    set_param(project, "train.seed", 43)
    out = run(["dvc", "repro", chain[-1]], project).stdout
    assert all(f"Running stage '{stage}'" in out for stage in chain), out
    assert outputs() != before
    set_param(project, "train.seed", PARAMS["train"]["seed"])
    out = run(["dvc", "repro", chain[-1]], project).stdout
    assert "Running stage" not in out, out
    assert all(f"Stage '{stage}' is cached - skipping run" in out for stage in chain), out
    assert outputs() == before


def test_output_paths_the_commands_read_are_dvc_yamls():
    from fashionclf.core import paths
    from fashionclf.learn.onnx_runner import ONNX_FILE

    stages = DVC_YAML["stages"]
    option = lambda stage, flag: re.search(rf"--{flag} (\S+)", stages[stage].get("cmd") or stages[stage]["do"]["cmd"])[1]
    assert option("aggregate", "best") == paths.BEST_MODEL
    assert option("aggregate", "report") == paths.SUMMARY_REPORT and option("review", "report") == paths.REVIEW_REPORT
    assert option("export", "out") == paths.EXPORT and paths.EXPORTED_MODEL == f"{paths.EXPORT}/{ONNX_FILE}"
    assert option("cv_train", "models") == f"{paths.MODELS}/${{key}}"
    assert option("test_clean", "calibration-predictions") == paths.CALIBRATION_PREDICTIONS.format(model="${key}")


def test_a_frozen_feature_head_runs_through_training_and_test_stages(tiny_project, tmp_path):
    """efficientnet_lite0_head named in train.models gets its own cv_train and test stages like any
    model: fold checkpoints whose backbone is the shipped one, out-of-fold and test metrics."""
    import json
    import shutil

    import torch

    from conftest import run
    from fashionclf.learn.inference import Ensemble
    from fashionclf.learn.models import build_model

    head = "efficientnet_lite0_head"
    project = tmp_path / "repo"
    shutil.copytree(tiny_project, project, symlinks=True)
    models = yaml.safe_load((project / "params.yaml").read_text())["train"]["models"]
    set_param(project, "train.models", {**models, head: {"image_size": 32, "epochs": 10, "lr": 0.01, "ema_decay": 0.0}})
    out = run(["dvc", "repro", f"test_noise@{head}"], project).stdout
    assert all(f"Running stage '{stage}@{head}'" in out for stage in ("cv_train", "test_clean", "test_noise")), out
    assert "Running stage 'cv_train@efficientnet_lite0'" not in out  # the other models' stages are untouched
    cv = json.loads((project / "metrics/cv" / f"{head}.json").read_text())
    clean = json.loads((project / "metrics/test_clean" / f"{head}.json").read_text())
    assert cv["oof"]["accuracy"] > 0.5 and clean["accuracy"] > 0.5  # 3 categories: chance is 1/3
    ensemble = Ensemble.load(project / "models" / head, fused=False)
    shipped = build_model("efficientnet_lite0", 3, pretrained=True, image_size=32).state_dict()
    for fold in ensemble.models:
        assert all(torch.equal(v, shipped[k]) for k, v in fold.state_dict().items() if not k.startswith("net._fc."))
