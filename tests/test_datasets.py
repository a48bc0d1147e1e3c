"""autoal_fast.experiment.datasets: digits, Fashion-MNIST IDX folders, .npz files, and their errors."""
import gzip
import os
import struct

import numpy as np
import pytest
import torch

from autoal_fast.experiment.datasets import DATASETS, FASHION_MNIST_DIR, load_dataset, read_idx


def _write_idx(path, arr, gz):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}
    head = struct.pack(">HBB", 0, codes[arr.dtype], arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)


def _fake_fmnist(folder, gz=True, n_train=30, n_test=10):
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    ext = ".gz" if gz else ""
    _write_idx(os.path.join(folder, "train-images-idx3-ubyte" + ext),
               rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), gz)
    _write_idx(os.path.join(folder, "train-labels-idx1-ubyte" + ext), (np.arange(n_train) % 10).astype(np.uint8), gz)
    _write_idx(os.path.join(folder, "t10k-images-idx3-ubyte" + ext),
               rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), gz)
    _write_idx(os.path.join(folder, "t10k-labels-idx1-ubyte" + ext), (np.arange(n_test) % 10).astype(np.uint8), gz)


def test_digits_split_and_standardised():
    d = load_dataset("digits")
    assert d.kind == "flat" and d.n_classes == 10
    assert d.x_train.shape == (1297, 64) and d.x_test.shape == (500, 64)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert torch.bincount(d.y_test).tolist() == [50] * 10
    assert abs(float(d.x_train.mean())) < 1e-3


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as e:
        load_dataset("cifar-1000")
    for name in DATASETS:
        assert name in str(e.value)
    assert ".npz" in str(e.value)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_fashion_mnist_idx_folder(tmp_path, gz, layout):
    folder = tmp_path / "fm"
    _fake_fmnist(str(folder / "FashionMNIST" / "raw") if layout == "torchvision" else str(folder), gz=gz)
    d = load_dataset("fashion-mnist", root=str(folder))
    assert d.kind == "grey" and d.x_train.shape == (30, 1, 28, 28) and d.x_test.shape == (10, 1, 28, 28)
    assert d.y_train.tolist() == [i % 10 for i in range(30)]


def test_fashion_mnist_env_variable(tmp_path, monkeypatch):
    _fake_fmnist(str(tmp_path))
    monkeypatch.setenv("AUTOAL_FAST_FASHION_MNIST", str(tmp_path))
    assert load_dataset("fashion-mnist").x_train.shape[0] == 30


def test_fashion_mnist_absent_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("fashion-mnist", root=str(tmp_path / "nowhere"))
    assert "nowhere" in str(e.value) and "apt-get install dataset-fashion-mnist" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_dataset("fashion-mnist", root=str(tmp_path / "empty"))


def test_truncated_idx_is_reported(tmp_path):
    _fake_fmnist(str(tmp_path), gz=False)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-7])
    with pytest.raises(ValueError, match="truncated"):
        load_dataset("fashion-mnist", root=str(tmp_path))
    (tmp_path / "x").write_bytes(b"\x01\x02\x03\x04\x05\x06\x07\x08")
    with pytest.raises(ValueError, match="magic"):
        read_idx(str(tmp_path / "x"))


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_debian_package():
    d = load_dataset("fashion-mnist")
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(d.y_test).tolist() == [1000] * 10


@pytest.mark.parametrize("shape,kind,stored", [
    ((40, 12), "flat", (12,)),
    ((40, 16, 16), "grey", (1, 16, 16)),
    ((40, 16, 16, 1), "grey", (1, 16, 16)),
    ((40, 32, 32, 3), "colour", (3, 32, 32)),
    ((40, 3, 32, 32), "colour", (3, 32, 32)),
])
def test_npz_shapes(tmp_path, shape, kind, stored):
    rng = np.random.default_rng(0)
    p = tmp_path / "d.npz"
    np.savez(p, x_train=rng.integers(0, 256, shape, dtype=np.uint8), y_train=np.arange(40) % 3,
             x_test=rng.integers(0, 256, (8,) + shape[1:], dtype=np.uint8), y_test=np.arange(8) % 3)
    d = load_dataset(str(p))
    assert d.kind == kind and d.input_shape == stored and d.n_classes == 3 and d.name == "d"


def test_broken_npz_clear_error(tmp_path):
    p = tmp_path / "broken.npz"
    p.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ValueError) as e:
        load_dataset(str(p))
    assert str(p) in str(e.value) and "x_train, y_train, x_test, y_test" in str(e.value)


def test_npz_missing_arrays_and_bad_labels(tmp_path):
    p = tmp_path / "m.npz"
    np.savez(p, x_train=np.zeros((4, 3)), y_train=np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match=r"lacks array\(s\) \['x_test', 'y_test'\]"):
        load_dataset(str(p))
    np.savez(p, x_train=np.zeros((4, 3)), y_train=np.zeros(4) + 0.5, x_test=np.zeros((2, 3)),
             y_test=np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="integer array"):
        load_dataset(str(p))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "absent.npz"))


def test_mnist1d_is_built_locally_and_deterministic():
    pytest.importorskip("mnist1d")
    from autoal_fast.experiment.models import CNN1D, build_model

    a, b = load_dataset("mnist1d"), load_dataset("MNIST-1D")
    assert "mnist1d" in DATASETS
    assert a.x_train.shape == (4000, 40) and a.x_test.shape == (1000, 40) and a.n_classes == 10
    assert a.kind == "signal" and a.x_train.dtype == torch.float32
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert sorted(torch.unique(a.y_train).tolist()) == list(range(10))
    assert abs(float(a.x_train.mean())) < 1e-3  # standardised on the training set
    model = build_model("auto", a.kind, a.input_shape, a.n_classes)
    assert isinstance(model, CNN1D)
    model.eval()
    logits, emb = model(a.x_train[:5])
    assert logits.shape == (5, 10) and emb.shape == (5, 128)
    assert torch.allclose(model.head(emb), logits)  # the head over the embeddings gives the logits
