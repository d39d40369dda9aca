"""Stage export: the best model's fold ensemble as TorchScript plus labels.json (no params)."""
from pathlib import Path

from fashionclf.cli import stage_main
from fashionclf.predict import best_model_name, export


def main():
    name = best_model_name("reports/best_model.json")
    labels = export(Path("models") / name, "models/export")
    print(f"export: {name} ({labels['folds']} folds) -> models/export/model.pt")


if __name__ == "__main__":
    stage_main(main)
