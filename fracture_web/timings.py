"""Where one analysis spends its time, stage by stage, as TorchServe times its handler's stages.

A plain record with no dependencies: the analysis fills it, the web layer and the DICOM node hand it
to ``fracture_web.metrics``, which exports it to ``/metrics``. The pure modules never import
prometheus.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

#: The stages, in the order one request passes through them: the upload's bytes to pixels, the
#: model (the letterboxed input, the network's call, its outputs read into a verdict and findings),
#: the display images drawn, and the answer encoded (PNG, base64, JSON or the page's HTML).
STAGES = ("decode", "model", "findings", "render", "encode")


class StageTimings:
    """The stages one request went through, each with its seconds, in the order they finished.

    A stage may come more than once (one decode per file of a study); each time is one entry.
    A stage that raised is not recorded.
    """

    def __init__(self) -> None:
        self.entries: list[tuple[str, float]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block under ``name``, one of ``STAGES`` (``ValueError`` otherwise)."""
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; the stages are {', '.join(STAGES)}")
        started = time.perf_counter()
        yield
        self.entries.append((name, time.perf_counter() - started))
