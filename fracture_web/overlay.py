"""Heatmap -> colour overlay images for display (numpy and OpenCV only)."""
from __future__ import annotations

import cv2
import numpy as np

from .imaging import letterbox_geometry

#: Colour-blind-safe, perceptually uniform colormap (not jet).
COLORMAP = cv2.COLORMAP_VIRIDIS


def display_image(image: np.ndarray, max_side: int = 640) -> np.ndarray:
    """Downscale a [0, 1] radiograph to at most max_side pixels, as uint8."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def heatmap_on_image(heatmap: np.ndarray, image_shape: tuple[int, int], input_size: int) -> np.ndarray:
    """Map a heatmap over the square letterboxed model input back onto the image's frame.

    Returns a float32 array of ``image_shape`` in [0, 1].
    """
    box = letterbox_geometry(image_shape[0], image_shape[1], input_size)
    square = cv2.resize(heatmap.astype(np.float32), (input_size, input_size), interpolation=cv2.INTER_CUBIC)
    crop = square[box.top:box.top + box.height, box.left:box.left + box.width]
    resized = cv2.resize(crop, (image_shape[1], image_shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(resized, 0.0, 1.0)


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """A [0, 1] heatmap as an RGB uint8 image in the colormap."""
    levels = np.clip(heatmap * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, COLORMAP), cv2.COLOR_BGR2RGB)


def blend(gray: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Overlay a [0, 1] heatmap (same shape as gray) on a uint8 radiograph; RGB uint8.

    The colour's weight grows with the heatmap value, so quiet regions keep the X-ray visible.
    OpenCV's per-pixel weighted sum does it in one pass over uint8 pixels (about 8x faster
    than the same arithmetic in float32 numpy).
    """
    colour_weight = np.float32(alpha) * heatmap.astype(np.float32, copy=False)
    return cv2.blendLinear(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), colorize(heatmap),
                           1.0 - colour_weight, colour_weight)


def legend(width: int = 256, height: int = 12) -> np.ndarray:
    """A horizontal colour bar of the colormap, low to high, RGB uint8."""
    ramp = np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))
    return colorize(ramp)


#: Fast PNG settings: the "up" filter and Huffman coding alone encode a 454x373 overlay in about
#: 40% of the time of zlib level 1 with adaptive filters, and the file comes out a little smaller.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]


def encode_png(image: np.ndarray) -> bytes:
    """Encode a gray or RGB uint8 array as PNG bytes (fast, lossless)."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", image, PNG_PARAMS)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buffer.tobytes()
