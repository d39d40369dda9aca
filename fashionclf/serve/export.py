"""export: the best model's fold ensemble as ONNX (dynamic batch) plus labels.json, so a shop can
serve it with onnxruntime alone.

torch.export (the dynamo exporter) is PyTorch's path now that TorchScript is deprecated, and it
handles the antialiased resize inside each model, which the TorchScript-based exporter cannot. It
is slow, though (about 15 s per fold model on 2 cores, mostly symbolic shape tracing), so one fold
is exported and the graph is repeated with each fold's weights: the folds share one architecture,
and the unoptimised graph keeps every parameter as an initializer named after its state_dict key.
Frozen-feature heads, whose folds share one backbone (learn/inference.py), export as the ensemble
module itself: the backbone once and the folds' classifiers, as PyTorch runs them.

The merged graph then goes through onnxscript's optimizer (constant folding). The exporter gives
each bias-free convolution a bias computed at run time (Expand of a zero), which stops onnxruntime
from folding the BatchNorm after it and from prepacking the convolution: unoptimised, the resnet18
ensemble ran at 0.28x the PyTorch path (bench/predict_throughput.py); folded, faster than PyTorch.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.store import atomic_dir
from ..learn.inference import Ensemble
from ..learn.onnx_runner import INPUT, LABELS_FILE, ONNX_FILE, OUTPUT

STACK_TRACE = "pkg.torch.onnx.stack_trace"  # node metadata the exporter adds (without_stack_traces)
OPSET = 18


class FoldProbabilities(nn.Module):
    """One fold model's probabilities; with ``flip_tta`` the mean over the image and its mirror, as
    the ensemble computes them (learn/inference.py)."""

    def __init__(self, model: nn.Module, flip_tta: bool = False):
        super().__init__()
        self.model = model
        self.flip_tta = flip_tta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.model(x).float(), dim=1)
        if self.flip_tta:
            probs = (probs + torch.softmax(self.model(x.flip(-1)).float(), dim=1)) / 2
        return probs


def export_fold_graph(model: nn.Module, canvas: int, flip_tta: bool = False):
    """One fold model (softmax included) as an ONNX ModelProto with a dynamic batch dimension."""
    return export_graph(FoldProbabilities(model, flip_tta).eval(), canvas)


def export_graph(module: nn.Module, canvas: int):
    """A module from images to probabilities as an ONNX ModelProto with a dynamic batch dimension."""
    program = torch.onnx.export(module, (torch.rand(2, 3, canvas, canvas),), input_names=[INPUT],
                                output_names=[OUTPUT], dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                                opset_version=OPSET, dynamo=True, optimize=False, verbose=False)
    return program.model_proto


def fold_subgraph(graph, state: dict, prefix: str):
    """The fold graph's nodes and initializers, renamed under ``prefix``, with this fold's weights."""
    from onnx import numpy_helper

    produced = {o for node in graph.node for o in node.output} | {i.name for i in graph.initializer}
    rename = {name: prefix + name for name in produced}
    nodes = []
    for node in graph.node:
        node = copy.deepcopy(node)
        node.name = prefix + node.name
        node.input[:] = [rename.get(i, i) for i in node.input]  # the shared input keeps its name
        node.output[:] = [rename[o] for o in node.output]
        nodes.append(node)
    initializers = []
    for init in graph.initializer:
        key = init.name.removeprefix("model.")
        if key not in state:
            raise ValueError(f"ONNX initializer {init.name} is not a parameter of the fold model")
        value = state[key].detach().cpu().numpy().astype(numpy_helper.to_array(init).dtype)
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), rename[init.name]))
    return nodes, initializers, rename[graph.output[0].name]


def ensemble_graph(fold_proto, states: list[dict]):
    """The mean of the fold models' probabilities, as one ONNX model."""
    from onnx import helper

    graph = fold_proto.graph
    nodes, initializers, outputs = [], [], []
    for k, state in enumerate(states):
        fold_nodes, fold_inits, output = fold_subgraph(graph, state, f"fold{k}/")
        nodes += fold_nodes
        initializers += fold_inits
        outputs.append(output)
    nodes.append(helper.make_node("Mean", outputs, [OUTPUT], name="fold_mean"))
    merged = helper.make_graph(nodes, "fold_ensemble", list(graph.input), list(graph.output), initializers)
    return helper.make_model(merged, opset_imports=list(fold_proto.opset_import),
                             producer_name="fashionclf", ir_version=fold_proto.ir_version)


def without_stack_traces(proto):
    """The model without the exporter's Python stack trace on every node: paths and line numbers of
    this code and torch's, which changed the file's bytes with every edit that moved a line (the same
    graph, weights and outputs); 0.3 of the 0.8 MB of node metadata."""
    for node in proto.graph.node:
        kept = [entry for entry in node.metadata_props if entry.key != STACK_TRACE]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    return proto


def export_onnx(model_dir: Path | str, out_dir: Path | str) -> dict:
    import onnx

    ensemble = Ensemble.load(model_dir, fused=False)
    canvas = ensemble.preprocessing["canvas_size"]
    from onnxscript import optimizer

    if ensemble.shared:  # one backbone and the folds' classifiers: small enough to export as it is
        proto = export_graph(ensemble, canvas)
    else:
        proto = ensemble_graph(export_fold_graph(ensemble.models[0], canvas, ensemble.flip_tta),
                               [model.state_dict() for model in ensemble.models])
    proto = without_stack_traces(optimizer.optimize(proto))
    onnx.checker.check_model(proto)
    labels = {"model": ensemble.name, "folds": ensemble.folds, "categories": ensemble.categories,
              "preprocessing": ensemble.preprocessing, "input": INPUT, "output": OUTPUT}
    with atomic_dir(out_dir) as tmp:
        onnx.save(proto, str(tmp / ONNX_FILE))
        (tmp / LABELS_FILE).write_text(json.dumps(labels, indent=2) + "\n")
    return labels
