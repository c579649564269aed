"""The work in one image, counted from a ``.tflite`` graph: the floor the benchmark compares the
measured latency with. Lab only: it calls LiteRT's private op listing, which serving never needs."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def multiply_adds(tflite_path: Path) -> int:
    """Multiply-adds of one image through the convolutions and dense layers of the .tflite graph."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    shapes = {t["index"]: t["shape"] for t in interpreter.get_tensor_details()}
    total = 0
    for op in interpreter._get_ops_details():  # noqa: SLF001 (LiteRT's only op listing)
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        out, weights = shapes[op["outputs"][0]], shapes[op["inputs"][1]]
        if op["op_name"] == "CONV_2D":  # weights (out, kh, kw, in)
            total += int(np.prod(out[:-1])) * int(np.prod(weights))
        elif op["op_name"] == "DEPTHWISE_CONV_2D":  # weights (1, kh, kw, channels)
            total += int(np.prod(out)) * int(weights[1] * weights[2])
        else:  # weights (out, in)
            total += int(np.prod(out)) * int(weights[1])
    return total
