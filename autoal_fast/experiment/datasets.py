"""Datasets for the active-learning experiments, all local (nothing is downloaded).

- ``"digits"``: scikit-learn's bundled 8x8 digits (1797 samples, 64 features,
  10 classes); a fixed stratified split gives 1297 train / 500 test samples.
- ``"fashion-mnist"``: the IDX files of Debian's ``dataset-fashion-mnist``
  package (``apt-get install dataset-fashion-mnist``), which installs
  ``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``.
  Gzipped or plain IDX files are read, from that folder, from the folder in
  ``$AUTOAL_FAST_FASHION_MNIST``, from a folder passed as ``root=``, or from a
  torchvision-style ``<root>/FashionMNIST/raw/`` folder.
- ``"mnist1d"``: MNIST-1D (Greydanus, 2020; PyPI ``mnist1d``), 1-D signals of 40
  points in 10 classes, built locally from the package's templates by its
  ``make_dataset`` with the published default arguments (4000 train / 1000 test,
  deterministic; the package's download is never called). Task model: a 1-D CNN.
- a path to an ``.npz`` file with ``x_train, y_train, x_test, y_test``:
  ``x`` of shape (n, d) (flat features), (n, h, w) or (n, h, w, 1) / (n, 1, h, w)
  (grey images) or (n, h, w, 3) / (n, 3, h, w) (colour images); ``y`` integer
  class ids in [0, n_classes).

Features are float32, standardised with the training set's statistics (per
feature for flat data, per channel for images). Labels are int64.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Dataset", "DATASETS", "FASHION_MNIST_DIR", "load_dataset", "read_idx"]

#: Names accepted by :func:`load_dataset` besides a path to an ``.npz`` file.
DATASETS = ("digits", "fashion-mnist", "mnist1d")
#: Where Debian's ``dataset-fashion-mnist`` package puts the IDX files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_FMNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_FMNIST_HELP = (
    "install Debian's package (`apt-get install dataset-fashion-mnist`, which puts the IDX files "
    f"under {FASHION_MNIST_DIR}), or point AUTOAL_FAST_FASHION_MNIST / --data-root at a folder "
    "holding train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] "
    "and t10k-labels-idx1-ubyte[.gz] (a torchvision FashionMNIST/raw folder works), or pass an .npz "
    "with x_train, y_train, x_test, y_test"
)


@dataclass
class Dataset:
    """Train and test tensors plus what the task model needs to know.

    Attributes
    ----------
    name : str
    x_train : torch.Tensor of shape (n_train, *input_shape), float32
    y_train : torch.Tensor of shape (n_train,), int64
    x_test : torch.Tensor of shape (n_test, *input_shape), float32
    y_test : torch.Tensor of shape (n_test,), int64
    n_classes : int
    kind : str
        ``"flat"`` (features, MLP), ``"grey"`` ((1, h, w) images, small CNN) or
        ``"colour"`` ((3, h, w) images, ResNet-18).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    kind: str

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
                f"n_classes={self.n_classes}, kind={self.kind!r})")


def load_dataset(name, root=None) -> Dataset:
    """Load a dataset by name or from an ``.npz`` path.

    Parameters
    ----------
    name : str or os.PathLike
        ``"digits"``, ``"fashion-mnist"``, ``"mnist1d"``, or a path to an ``.npz`` file.
    root : str, default=None
        For ``"fashion-mnist"``: a folder with the IDX files (gzipped or not).
        Default: ``$AUTOAL_FAST_FASHION_MNIST``, then ``FASHION_MNIST_DIR``.

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones), or a file that is
        present but not what it should be.
    FileNotFoundError
        The files are absent; the message names the path and how to get them.
    """
    name = os.fspath(name) if isinstance(name, os.PathLike) else name
    if not isinstance(name, str):
        raise TypeError(f"dataset must be a str or path (load_dataset); got {type(name).__name__}")
    key = name.lower().replace("_", "-")
    if key == "digits":
        return _load_digits()
    if key in ("fashion-mnist", "fashionmnist", "fmnist"):
        return _load_fashion_mnist(root)
    if key in ("mnist1d", "mnist-1d"):
        return _load_mnist1d()
    if name.endswith(".npz") or os.path.isfile(name):
        return _load_npz(name)
    raise ValueError(
        f"dataset must be one of {list(DATASETS)} or a path to an existing .npz file with "
        f"x_train, y_train, x_test, y_test (load_dataset); got {name!r}"
    )


# --------------------------------------------------------------------------- MNIST-1D
def _load_mnist1d() -> Dataset:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:
        raise ImportError(
            "the 'mnist1d' dataset is built locally by PyPI's mnist1d package (no download): "
            "pip install mnist1d"
        ) from e
    d = make_dataset(get_dataset_args())  # the published defaults, seeded: same data every time
    ds = _finish("mnist1d", d["x"], d["y"], d["x_test"], d["y_test"], "mnist1d (make_dataset)")
    ds.kind = "signal"  # flat (n, 40) features read as a 1-channel signal by the 1-D CNN
    return ds


# --------------------------------------------------------------------------- digits
def _load_digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - sklearn is in the test extra
        raise ImportError(
            "the 'digits' dataset comes from scikit-learn (bundled with it, no download): "
            "pip install scikit-learn"
        ) from e
    d = load_digits()
    x = d.data.astype(np.float32)
    y = d.target.astype(np.int64)
    # A fixed stratified split: 50 test samples per class, the rest for training.
    rng = np.random.default_rng(0)
    test = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:50] for c in range(10)])
    mask = np.zeros(len(y), dtype=bool)
    mask[test] = True
    return _finish("digits", x[~mask], y[~mask], x[mask], y[mask], "digits (sklearn)")


# --------------------------------------------------------------------------- IDX
def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (``.gz`` or plain) as a numpy array of its stored dtype."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"cannot read IDX file {path}: {e}") from e
    if len(data) < 4:
        raise ValueError(f"{path} is not an IDX file: only {len(data)} bytes")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if zero != 0 or dtype_code not in dtypes or ndim == 0:
        raise ValueError(f"{path} is not an IDX file: bad magic number {data[:4].hex()}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path} is truncated: header needs {header} bytes, file has {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(dtypes[dtype_code])
    need = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != need:
        raise ValueError(
            f"{path} is truncated or corrupt: shape {shape} needs {need} data bytes, file has {len(data) - header}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(folder: str, stem: str):
    for cand in (os.path.join(folder, stem), os.path.join(folder, stem + ".gz"),
                 os.path.join(folder, "FashionMNIST", "raw", stem),
                 os.path.join(folder, "FashionMNIST", "raw", stem + ".gz"),
                 os.path.join(folder, "raw", stem), os.path.join(folder, "raw", stem + ".gz")):
        if os.path.isfile(cand):
            return cand
    return None


def _load_fashion_mnist(root=None) -> Dataset:
    folder = root or os.environ.get("AUTOAL_FAST_FASHION_MNIST") or FASHION_MNIST_DIR
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Fashion-MNIST folder {folder} does not exist: {_FMNIST_HELP}")
    arrays = {}
    for key, stem in _FMNIST_FILES.items():
        path = _find_idx(folder, stem)
        if path is None:
            raise FileNotFoundError(f"Fashion-MNIST file {stem}[.gz] not found under {folder}: {_FMNIST_HELP}")
        arrays[key] = read_idx(path)
    for split in ("train", "test"):
        x, y = arrays["x_" + split], arrays["y_" + split]
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"Fashion-MNIST {split} files under {folder} do not match: images {x.shape}, labels {y.shape}"
            )
    return _finish("fashion-mnist", arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                   folder, scale=255.0)


# --------------------------------------------------------------------------- npz
def _load_npz(path: str) -> Dataset:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dataset file {path} does not exist (load_dataset): pass an existing .npz "
                                f"with x_train, y_train, x_test, y_test, or one of {list(DATASETS)}")
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:  # our handle: closed on errors too
            files = list(z.files)
            arrays = {k: z[k] for k in keys if k in files}
    except Exception as e:  # a broken zip, a truncated member, an object array, not an npz at all
        raise ValueError(f"{path} is not a readable .npz file ({type(e).__name__}: {e}); it needs "
                         "x_train, y_train, x_test, y_test (numpy.savez)") from e
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"{path} lacks array(s) {missing}: an .npz dataset needs x_train, y_train, x_test, "
                         f"y_test; it has {sorted(files)}")
    for split in ("train", "test"):
        x, y = arrays["x_" + split], arrays["y_" + split]
        if x.dtype.kind not in "fiub":
            raise ValueError(f"{path}: x_{split} must be numeric; got dtype {x.dtype}")
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise ValueError(f"{path}: y_{split} must be a 1-D integer array of class ids; got shape "
                             f"{y.shape}, dtype {y.dtype}")
        if x.ndim not in (2, 3, 4) or x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(f"{path}: x_{split} must have shape (n, d), (n, h, w) or (n, h, w, c) with "
                             f"n = len(y_{split}) = {y.shape[0]} > 0; got {x.shape}")
        if (y < 0).any():
            raise ValueError(f"{path}: y_{split} must hold class ids >= 0; got min {int(y.min())}")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise ValueError(f"{path}: x_train and x_test must have the same sample shape; got "
                         f"{arrays['x_train'].shape[1:]} and {arrays['x_test'].shape[1:]}")
    scale = 255.0 if arrays["x_train"].dtype == np.uint8 else 1.0
    name = os.path.splitext(os.path.basename(path))[0]
    return _finish(name, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], path,
                   scale=scale)


# --------------------------------------------------------------------------- common
def _to_nchw(x: np.ndarray, where: str):
    """(n, d) stays flat; (n, h, w) -> (n, 1, h, w); channels-last -> channels-first."""
    if x.ndim == 2:
        return x, "flat"
    if x.ndim == 3:
        return x[:, None], "grey"
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = np.transpose(x, (0, 3, 1, 2))
    c = x.shape[1]
    if c == 1:
        return x, "grey"
    if c == 3:
        return x, "colour"
    raise ValueError(f"{where}: images must have 1 or 3 channels; got shape {x.shape}")


def _finish(name, x_tr, y_tr, x_te, y_te, where, scale=1.0) -> Dataset:
    x_tr = np.asarray(x_tr, dtype=np.float32) / np.float32(scale)
    x_te = np.asarray(x_te, dtype=np.float32) / np.float32(scale)
    x_tr, kind = _to_nchw(x_tr, where)
    x_te, _ = _to_nchw(x_te, where)
    if not (np.isfinite(x_tr).all() and np.isfinite(x_te).all()):
        raise ValueError(f"{where}: features must be finite (NaN or inf found)")
    axes = (0,) if kind == "flat" else (0, 2, 3)
    mean = x_tr.mean(axis=axes, keepdims=True, dtype=np.float64).astype(np.float32)
    std = x_tr.std(axis=axes, keepdims=True, dtype=np.float64).astype(np.float32)
    std[std < 1e-6] = 1.0
    x_tr = (x_tr - mean) / std
    x_te = (x_te - mean) / std
    y_tr = np.asarray(y_tr, dtype=np.int64)
    y_te = np.asarray(y_te, dtype=np.int64)
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    if n_classes < 2:
        raise ValueError(f"{where}: need at least 2 classes; labels are all {int(y_tr.max())}")
    return Dataset(name, torch.from_numpy(np.ascontiguousarray(x_tr)), torch.from_numpy(y_tr),
                   torch.from_numpy(np.ascontiguousarray(x_te)), torch.from_numpy(y_te), n_classes, kind)
