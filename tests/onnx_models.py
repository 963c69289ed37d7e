"""Tiny ONNX landmark models built by the tests themselves (no weights are shipped).

``centroid_model`` finds the brightness-weighted centroid of its input and answers each
landmark at a fixed offset from it, in input pixels: on a black film with one white square
its answer is known exactly (the square's centre plus the offsets), so a test can follow
the pixels through decoding, resampling to the model's spacing and mapping back. On an
all-black input the centroid is 0/0: the model answers NaN, as a broken model would.

The others answer garbage on purpose: the wrong shape, or constants off the film.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


def _model(nodes, initialisers, width: int, height: int, output_shape: Sequence[int]) -> bytes:
    graph = helper.make_graph(
        nodes, "landmarks",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, height, width])],
        [helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, list(output_shape))],
        initialisers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="orthovault-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def centroid_model(width: int, height: int, offsets: Sequence[tuple[float, float]]) -> bytes:
    """Landmark i at centroid + offsets[i] (input pixels, pixel centres at i + 0.5)."""
    xs = np.broadcast_to(np.arange(width, dtype=np.float32) + 0.5, (height, width))
    ys = np.broadcast_to((np.arange(height, dtype=np.float32) + 0.5)[:, None], (height, width))
    init = [
        numpy_helper.from_array(xs.reshape(1, 1, height, width).copy(), "grid_x"),
        numpy_helper.from_array(ys.reshape(1, 1, height, width).copy(), "grid_y"),
        numpy_helper.from_array(np.array(offsets, np.float32).reshape(1, -1, 2), "offsets"),
        numpy_helper.from_array(np.array([1, 1, 2], np.int64), "pair_shape"),
    ]
    nodes = [
        helper.make_node("ReduceSum", ["image"], ["mass"], keepdims=0),
        helper.make_node("Mul", ["image", "grid_x"], ["wx"]),
        helper.make_node("Mul", ["image", "grid_y"], ["wy"]),
        helper.make_node("ReduceSum", ["wx"], ["sx"], keepdims=0),
        helper.make_node("ReduceSum", ["wy"], ["sy"], keepdims=0),
        helper.make_node("Div", ["sx", "mass"], ["cx"]),
        helper.make_node("Div", ["sy", "mass"], ["cy"]),
        helper.make_node("Unsqueeze", ["cx", "axis0"], ["cx1"]),
        helper.make_node("Unsqueeze", ["cy", "axis0"], ["cy1"]),
        helper.make_node("Concat", ["cx1", "cy1"], ["centre"], axis=0),
        helper.make_node("Reshape", ["centre", "pair_shape"], ["centre3"]),
        helper.make_node("Add", ["centre3", "offsets"], ["landmarks"]),
    ]
    init.append(numpy_helper.from_array(np.array([0], np.int64), "axis0"))
    return _model(nodes, init, width, height, [1, len(offsets), 2])


def constant_model(width: int, height: int, answer: np.ndarray) -> bytes:
    """Answers ``answer`` whatever the image (0 x the input keeps the input in the graph)."""
    answer = np.asarray(answer, np.float32)
    init = [numpy_helper.from_array(answer, "answer")]
    nodes = [
        helper.make_node("ReduceSum", ["image"], ["mass"], keepdims=0),
        helper.make_node("Mul", ["mass", "zero"], ["nothing"]),
        helper.make_node("Add", ["answer", "nothing"], ["landmarks"]),
    ]
    init.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    return _model(nodes, init, width, height, list(answer.shape))
