"""Streaming a task model's outputs over a dataset into ``PoolOutputs``.

One pass of the model over ``data[ids]`` in eval mode, under no grad, batch by batch
(``model_outputs``): logits and embeddings, and with ``mc_passes`` the stochastic
predictions of the model with only its Dropout modules in train mode, taken in the same
pass. ``OutputSink`` keeps them in memory or streams them into ``.npy`` files that are
read back memory-mapped, so a 10M-sample pool never sits in RAM. ``StreamPlan`` is what
``AutoAL.query_model`` runs: checked ids and options, the labeled set then the seeded
unlabeled pool, and the chosen rows mapped back to global ids.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ._validation import check_ids, check_int, is_array
from .pool import PoolOutputs

__all__ = ["model_outputs", "OutputSink", "StreamPlan"]


@dataclass
class StreamPlan:
    """The checked arguments of one streamed pass over a labeled and an unlabeled set.

    Attributes
    ----------
    model : torch.nn.Module
        ``model(x)`` returns ``(logits, embeddings)``.
    labeled_ids, unlabeled_ids : torch.LongTensor of shape (n,), on CPU
        Disjoint global ids; ``unlabeled_ids`` is not empty.
    head : torch.nn.Module or None
        MC-dropout head over the embeddings of the unlabeled pool.
    mc_passes : int
        0, or >= 2 full stochastic forward passes per batch.
    batch_size : int
    """

    model: nn.Module
    labeled_ids: torch.Tensor
    unlabeled_ids: torch.Tensor
    head: nn.Module | None
    mc_passes: int
    batch_size: int

    @classmethod
    def check(cls, model, labeled_ids, unlabeled_ids, *, head="auto", mc_passes=0, batch_size=1024,
              caller="StreamPlan", n_total=None) -> "StreamPlan":
        """Validate the arguments (``head="auto"``: ``model.head`` when it is an nn.Module).

        Ids must be unique ints in [0, n_total) (``n_total``: ``len(data)``, when known)."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module ({caller}); got {type(model).__name__}")
        # ids >= 0 (never wrapped around), unique, and below len(data) when it is known
        lab_ids = check_ids(labeled_ids, "labeled_ids", caller, n_total)
        unl_ids = check_ids(unlabeled_ids, "unlabeled_ids", caller, n_total)
        if lab_ids.numel() == 0:
            raise ValueError(f"labeled_ids is empty ({caller}): the search needs labeled samples")
        if unl_ids.numel() == 0:
            raise ValueError(f"unlabeled_ids is empty ({caller})")
        both = torch.isin(unl_ids, lab_ids)
        if bool(both.any()):
            raise ValueError(f"labeled_ids and unlabeled_ids must be disjoint ({caller}); "
                             f"{int(both.sum())} id(s) are in both, e.g. {int(unl_ids[both][0])}")
        mc_passes = check_int(mc_passes, "mc_passes", caller, low=0)
        if mc_passes == 1:
            raise ValueError(f"mc_passes must be 0 or >= 2 ({caller}); got 1")
        if head == "auto":
            head = getattr(model, "head", None)
            head = head if isinstance(head, nn.Module) else None
        elif head is not None and not isinstance(head, nn.Module):
            raise TypeError(f"head must be 'auto', an nn.Module or None ({caller}); got {type(head).__name__}")
        bs = check_int(batch_size, "batch_size", caller, low=1)
        return cls(model, lab_ids, unl_ids, head, mc_passes, bs)

    def run(self, data, sink: "OutputSink", mc_seed, progress: bool = False):
        """``(labeled, unlabeled)`` PoolOutputs: the labeled set in memory, then the unlabeled
        pool into ``sink``, its MC-dropout passes seeded with ``mc_seed()`` (called between
        the two passes; the caller's RNG state is restored)."""
        lab = model_outputs(self.model, data, self.labeled_ids, self.batch_size, 0)
        seed = mc_seed()
        dev = _module_device(self.model)
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)  # the MC-dropout passes are seeded too
            unl = model_outputs(self.model, data, self.unlabeled_ids, self.batch_size, self.mc_passes,
                                head=self.head if self.mc_passes == 0 else None, sink=sink, progress=progress)
        return lab, unl

    def global_ids(self, rows: torch.Tensor, like):
        """The global ids of rows of the unlabeled pool, of ``like``'s type (numpy in, numpy
        out; a tensor on ``like``'s device)."""
        chosen = self.unlabeled_ids[rows.cpu()]
        if is_array(like):
            return chosen.numpy()
        if isinstance(like, torch.Tensor):
            return chosen.to(like.device)
        return chosen


def _as_ids(ids, name, caller) -> torch.Tensor:
    if isinstance(ids, torch.Tensor):
        t = ids.detach().cpu()
    else:
        t = torch.as_tensor(np.asarray(ids))
    if t.is_floating_point() or t.dtype == torch.bool or t.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer ids ({caller}); got dtype {t.dtype}, "
                         f"shape {tuple(t.shape)}")
    return t.to(torch.int64)


def _module_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _set_dropout_train(model: nn.Module, on: bool) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.train(on)


@torch.no_grad()
def model_outputs(model: nn.Module, data, ids: torch.Tensor, batch_size: int, mc_passes: int = 0,
                  head: nn.Module | None = None, sink: "OutputSink | None" = None,
                  progress: bool = False) -> PoolOutputs:
    """One streamed pass of ``model`` over ``data[ids]``: PoolOutputs on the model's device,
    or memory-mapped files when ``sink`` writes to a folder.

    Eval mode, no grad; with ``mc_passes`` > 0 each batch also runs ``mc_passes`` times
    with only the Dropout modules in train mode. Training flags are restored.
    """
    device = _module_device(model)
    sink = sink if sink is not None else OutputSink(int(ids.numel()), mc_passes)
    flags = {m: m.training for m in model.modules()}
    model.eval()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(ids.numel()), desc="model outputs", unit="sample")
    try:
        for xb in _batches(data, ids, batch_size):
            xb = xb.to(device)
            out = model(xb)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError("model(x) must return (logits, embeddings) (AutoAL.query_model)")
            lg, em = out
            mc = None
            if mc_passes:
                _set_dropout_train(model, True)
                mc = torch.stack([model(xb)[0].float() for _ in range(mc_passes)])
                _set_dropout_train(model, False)
            sink.add(lg.float(), em.reshape(em.shape[0], -1).float(), mc)
            if bar is not None:
                bar.update(int(xb.shape[0]))
    finally:
        for m, f in flags.items():
            m.training = f
        if bar is not None:
            bar.close()
    return sink.pool(head)


class OutputSink:
    """Where ``model_outputs`` puts the pool's outputs: lists of tensors in memory, or
    ``.npy`` files in ``out_dir`` written batch by batch (opened once the first batch
    gives the widths) and handed back memory-mapped."""

    DTYPES = {"float32": np.float32, "float16": np.float16}

    def __init__(self, n: int, mc_passes: int, out_dir=None, dtype="float32", caller="model_outputs"):
        key = dtype if isinstance(dtype, str) else {np.float32: "float32", np.float16: "float16",
                                                     torch.float32: "float32", torch.float16: "float16"}.get(dtype)
        if key not in self.DTYPES:
            raise ValueError(f"outputs_dtype must be 'float32' or 'float16' ({caller}); got {dtype!r}")
        self.n, self.mc_passes, self.dtype = n, mc_passes, self.DTYPES[key]
        self.dir = None
        if out_dir is not None:
            self.dir = os.fspath(out_dir)
            if os.path.exists(self.dir) and not os.path.isdir(self.dir):
                raise ValueError(f"outputs_dir must be a folder ({caller}); {self.dir!r} is a file")
            os.makedirs(self.dir, exist_ok=True)
        self.parts = {"logits": [], "embeddings": [], "mc_logits": []}
        self.files = {}
        self.filled = 0

    def add(self, logits, emb, mc):
        if self.dir is None:
            self.parts["logits"].append(logits)
            self.parts["embeddings"].append(emb)
            if mc is not None:
                self.parts["mc_logits"].append(mc)
            return
        b = int(logits.shape[0])
        if not self.files:
            shapes = {"logits": (self.n, logits.shape[1]), "embeddings": (self.n, emb.shape[1])}
            if mc is not None:
                shapes["mc_logits"] = (mc.shape[0], self.n, mc.shape[2])
            for name, shape in shapes.items():
                self.files[name] = np.lib.format.open_memmap(os.path.join(self.dir, f"{name}.npy"), mode="w+",
                                                             dtype=self.dtype, shape=shape)
        sl = slice(self.filled, self.filled + b)
        self.files["logits"][sl] = logits.detach().cpu().numpy()
        self.files["embeddings"][sl] = emb.detach().cpu().numpy()
        if mc is not None:
            self.files["mc_logits"][:, sl] = mc.detach().cpu().numpy()
        self.filled += b

    def pool(self, head) -> PoolOutputs:
        if self.dir is None:
            mc = torch.cat(self.parts["mc_logits"], dim=1) if self.parts["mc_logits"] else None
            return PoolOutputs(torch.cat(self.parts["logits"]), embeddings=torch.cat(self.parts["embeddings"]),
                               mc_logits=mc, head=head)
        paths = {name: os.path.join(self.dir, f"{name}.npy") for name in self.files}
        for arr in self.files.values():
            arr.flush()
        self.files.clear()
        maps = {name: np.load(path, mmap_mode="r") for name, path in paths.items()}
        return PoolOutputs(maps["logits"], embeddings=maps["embeddings"], mc_logits=maps.get("mc_logits"),
                           head=head)


def _batches(data, ids: torch.Tensor, batch_size: int):
    if isinstance(data, torch.Tensor):
        for start in range(0, ids.numel(), batch_size):
            yield data[ids[start:start + batch_size].to(data.device)]
        return
    if is_array(data):
        for start in range(0, ids.numel(), batch_size):
            yield torch.as_tensor(data[ids[start:start + batch_size].numpy()])
        return
    from torch.utils.data import DataLoader, Subset

    # its own generator: a DataLoader draws a base seed at each iteration start, which
    # would otherwise shift the global stream that the MC-dropout passes use
    loader = DataLoader(Subset(data, ids.tolist()), batch_size=batch_size, shuffle=False,
                        generator=torch.Generator())
    for item in loader:
        yield item[0] if isinstance(item, (tuple, list)) else item
