"""The folder tree is the architecture (docs/architecture.md): each sub-package imports only the
floors below it, model runners live in learn/, and calibration has one home."""
import ast

from conftest import ROOT

FLOOR = {"core": 1, "data": 2, "learn": 2, "ci": 2, "report": 3, "serve": 4}
MAY_IMPORT = {"core": set(), "data": {"core"}, "learn": {"core"}, "ci": {"core"},
              "report": {"core", "learn"}, "serve": {"core", "data", "learn", "report"}}


def project_imports(path):
    """The sub-packages a module of fashionclf/<sub>/ imports (relative or absolute, any depth)."""
    sub = path.parent.name
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found.add(sub)
            elif node.level == 2:
                found.add((node.module or "").split(".")[0] or "fashionclf")
            elif node.module and node.module.startswith("fashionclf."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("fashionclf.")}
    return found


def test_every_module_sits_in_a_sub_package():
    flat = sorted(p.name for p in (ROOT / "fashionclf").glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not flat, f"modules outside a sub-package: {flat}"
    assert {p.name for p in (ROOT / "fashionclf").iterdir() if p.is_dir() and p.name != "__pycache__"} == set(FLOOR)


def test_sub_packages_import_only_the_floors_below():
    wrong = []
    for sub, allowed in MAY_IMPORT.items():
        for path in sorted((ROOT / "fashionclf" / sub).glob("*.py")):
            for imported in project_imports(path) - {sub} - allowed:
                wrong.append(f"fashionclf/{sub}/{path.name} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_runners_are_inference_and_calibration_has_one_home():
    predictor = (ROOT / "fashionclf/serve/predictor.py").read_text()
    assert "export import" not in predictor and "review import" not in predictor
    assert "class OnnxEnsemble" in (ROOT / "fashionclf/learn/onnx_runner.py").read_text()
    assert "class Calibration" in (ROOT / "fashionclf/report/calibration.py").read_text()
    for caller in ["report/review.py", "serve/predictor.py"]:
        text = (ROOT / "fashionclf" / caller).read_text()
        assert "Calibration" in text and "def select_automatic" not in text and "def fit_temperature" not in text
    assert all((ROOT / "fashionclf" / sub / "__init__.py").stat().st_size == 0 for sub in FLOOR)


def test_predict_and_label_share_one_predicting_core():
    """One Predictor, one decision, one row schema, one count summary (serve/predictor.py); the two
    front ends only read inputs and write their format."""
    for front in ["serve/predict.py", "serve/catalogue.py", "serve/label.py"]:
        text = (ROOT / "fashionclf" / front).read_text()
        assert "class Predictor" not in text and ".select(" not in text and "NEEDS_REVIEW" not in text, front
        assert "from .predictor import" in text, front


def test_no_module_level_mutable_state_hands_data_between_processes():
    """Workers get their data as arguments (learn/folds.py), never through a module global that an
    initializer fills: such a hand-off cannot be followed by a reader, nor reused by another runner."""
    found = []
    for path in sorted((ROOT / "fashionclf").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            empty_container = isinstance(value, (ast.Dict, ast.List, ast.Set)) and not (
                getattr(value, "keys", None) or getattr(value, "elts", None))
            if empty_container:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"module-level empty containers (filled at run time): {found}"
