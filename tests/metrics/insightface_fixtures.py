"""A tiny insightface model pack in the real on-disk layout, so insightface's own loader and router run on it.

``<root>/models/<pack>/det_tiny.onnx``: an SCRFD-signature detector (9 outputs: scores, box distances and 5 keypoints
for strides 8/16/32, two anchors per cell; fixed 1x3x160x160 input). It "detects" bright regions: a stride-32 cell's
score is sigmoid(12 * (mean normalised intensity - 0.5)); strides 8 and 16 never fire. Every box is 4x4 strides
(128 px at stride 32) around its cell, with fixed keypoints.

``<root>/models/<pack>/w_tiny.onnx``: an ArcFace-signature recogniser (112x112 input, one output): 8x8 average pool,
then a seeded random 588x32 projection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DET_SIZE = 160
STRIDES = (8, 16, 32)
ANCHORS = 2


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value.astype(np.float32), name))


def _save(nodes, inputs, outputs, path: Path) -> None:
    graph = helper.make_graph(nodes, path.stem, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_detector(path: Path) -> None:
    nodes = [helper.make_node("ReduceMean", ["input.1"], ["grey"], axes=[1], keepdims=1)]
    outs = {"score": [], "bbox": [], "kps": []}
    kps_unit = np.array([-0.6, -0.5, 0.6, -0.5, 0.0, 0.0, -0.5, 0.6, 0.5, 0.6], dtype=np.float32)
    for s in STRIDES:
        h = DET_SIZE // s
        n = h * h * ANCHORS
        nodes.append(helper.make_node("AveragePool", ["grey"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s]))
        gain, bias = (12.0, -6.0) if s == 32 else (0.0, -20.0)
        nodes += [
            _const(f"gain{s}", np.array(gain)),
            _const(f"bias{s}", np.array(bias)),
            helper.make_node("Mul", [f"pool{s}", f"gain{s}"], [f"m{s}"]),
            helper.make_node("Add", [f"m{s}", f"bias{s}"], [f"a{s}"]),
            helper.make_node("Sigmoid", [f"a{s}"], [f"sig{s}"]),
            helper.make_node("Concat", [f"sig{s}"] * ANCHORS, [f"sc{s}"], axis=1),
            helper.make_node("Transpose", [f"sc{s}"], [f"sct{s}"], perm=[0, 2, 3, 1]),
            _const(f"shape1_{s}", np.array([-1, 1])),
        ]
        nodes.append(helper.make_node("Cast", [f"shape1_{s}"], [f"shape1i_{s}"], to=TensorProto.INT64))
        nodes.append(helper.make_node("Reshape", [f"sct{s}", f"shape1i_{s}"], [f"score_{s}"]))
        for kind, unit, width in (("bbox", np.full(4, 2.0, np.float32), 4), ("kps", kps_unit, 10)):
            nodes += [
                _const(f"zero_{kind}{s}", np.array(0.0)),
                helper.make_node("Mul", [f"pool{s}", f"zero_{kind}{s}"], [f"z_{kind}{s}"]),
                _const(f"unit_{kind}{s}", np.tile(unit, ANCHORS).reshape(1, width * ANCHORS, 1, 1)),
                helper.make_node("Add", [f"z_{kind}{s}", f"unit_{kind}{s}"], [f"u_{kind}{s}"]),
                helper.make_node("Transpose", [f"u_{kind}{s}"], [f"ut_{kind}{s}"], perm=[0, 2, 3, 1]),
                _const(f"shape_{kind}{s}", np.array([-1, width])),
                helper.make_node("Cast", [f"shape_{kind}{s}"], [f"shapei_{kind}{s}"], to=TensorProto.INT64),
                helper.make_node("Reshape", [f"ut_{kind}{s}", f"shapei_{kind}{s}"], [f"{kind}_{s}"]),
            ]
        outs["score"].append(helper.make_tensor_value_info(f"score_{s}", TensorProto.FLOAT, [n, 1]))
        outs["bbox"].append(helper.make_tensor_value_info(f"bbox_{s}", TensorProto.FLOAT, [n, 4]))
        outs["kps"].append(helper.make_tensor_value_info(f"kps_{s}", TensorProto.FLOAT, [n, 10]))
    inp = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, DET_SIZE, DET_SIZE])
    _save(nodes, [inp], outs["score"] + outs["bbox"] + outs["kps"], path)


def build_recogniser(path: Path, seed: int = 0, dim: int = 32) -> None:
    w = np.random.default_rng(seed).standard_normal((3 * 14 * 14, dim)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["data"], ["pool"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        _const("w", w),
        helper.make_node("MatMul", ["flat", "w"], ["fc1"]),
    ]
    inp = helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 112, 112])
    out = helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["N", dim])
    _save(nodes, [inp], [out], path)


def build_pack(root: Path, name: str = "tiny_pack", detector: bool = True, recogniser: bool = True) -> Path:
    """Write the pack under ``<root>/models/<name>`` and return that directory."""
    pack = root / "models" / name
    pack.mkdir(parents=True, exist_ok=True)
    if detector:
        build_detector(pack / "det_tiny.onnx")
    if recogniser:
        build_recogniser(pack / "w_tiny.onnx")
    return pack
