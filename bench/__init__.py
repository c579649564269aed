"""The lab, not the product: benchmarks, load and burst generators, parity checks and their helpers
(see bench/README.md). Run each from the project root as ``python -m bench.<tool>``. Tests may import
these helpers; nothing in ``fracture_web`` does."""
