"""Bad input at every public door, in the manner of scikit-learn's estimator checks.

``BAD`` is one table: a row per case, (entry point, case id, call, expected exception
type, substring the message must contain: the argument the user passed). ``EDGE`` holds
legal edge cases with their correct results. A new public function joins both tables:
``test_every_public_entry_point_is_in_the_table`` fails when one is missing.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import autoal_fast as aaf
from autoal_fast import PoolOutputs, TopK, topk
from autoal_fast import strategies as S

N, C, D, T = 24, 3, 5, 3


def _rng():
    return np.random.default_rng(0)


def L(n=N, dtype=np.float32):
    return _rng().standard_normal((n, C)).astype(dtype)


def E(n=N, d=D, dtype=np.float32):
    return np.random.default_rng(1).standard_normal((n, d)).astype(dtype)


def MC(n=N, t=T, dtype=np.float32):
    return np.random.default_rng(2).standard_normal((t, n, C)).astype(dtype)


def pool(**kw):
    args = dict(logits=L(), embeddings=E(), mc_logits=MC())
    args.update(kw)
    return PoolOutputs(**args)


def labeled(n=12, d=D):
    return PoolOutputs(L(n), E(n, d))


def _topk_stream(k, *chunks, **kw):
    s = TopK(k, **kw)
    for chunk, off in chunks:
        s.update(chunk, off)
    return s.result()


X = np.array([5.0, 4.0, 3.0, 9.0, 1.0])
HUGE64 = np.array([[1e300, 0.0, 1.0]] + [[0.0, 1.0, 2.0]] * (N - 1))

# (entry point, case id, call, exception type, substring of the message)
BAD = [
    # ---- topk
    ("topk", "x list", lambda: topk([1.0, 2.0], 1), TypeError, "x must be"),
    ("topk", "x int array", lambda: topk(np.arange(4), 1), TypeError, "x must be"),
    ("topk", "x int tensor", lambda: topk(torch.arange(4), 1), TypeError, "x must be"),
    ("topk", "x complex", lambda: topk(np.array([1j, 2j]), 1), TypeError, "x must be"),
    ("topk", "x longdouble", lambda: topk(X.astype(np.longdouble), 1), TypeError, "x must be"),
    ("topk", "x 0-d", lambda: topk(np.float64(1.0), 1), TypeError, "x must be"),
    ("topk", "x 2-D", lambda: topk(np.ones((2, 2)), 1), ValueError, "x must be 1-D"),
    ("topk", "x NaN", lambda: topk(np.array([1.0, np.nan]), 1), ValueError, "x contains 1 NaN"),
    ("topk", "k > n", lambda: topk(X, 6), ValueError, "k must be"),
    ("topk", "k < 0", lambda: topk(X, -1), ValueError, "k must be"),
    ("topk", "k float", lambda: topk(X, 2.0), TypeError, "k must be"),
    ("topk", "largest str", lambda: topk(X, 2, largest="False"), TypeError, "largest"),
    ("topk", "largest int", lambda: topk(X, 2, largest=0), TypeError, "largest"),
    ("topk", "nan_policy", lambda: topk(X, 2, nan_policy="drop"), ValueError, "nan_policy"),
    ("topk", "nan_policy list", lambda: topk(X, 2, nan_policy=["omit"]), ValueError, "nan_policy"),
    ("topk", "omit too few", lambda: topk(np.array([np.nan, 1.0]), 2, nan_policy="omit"),
     ValueError, "non-NaN"),
    # ---- TopK
    ("TopK", "overlapping offsets",
     lambda: _topk_stream(4, (np.array([5.0, 4.0, 3.0]), 0), (np.array([9.0, 1.0]), 2)), ValueError, "offset"),
    ("TopK", "same chunk twice", lambda: _topk_stream(2, (X, 0), (X, 0)), ValueError, "offset"),
    ("TopK", "chunk inside an earlier one", lambda: _topk_stream(2, (X, 10), (X[:1], 12)), ValueError, "offset"),
    ("TopK", "chunk over a gap's edge", lambda: _topk_stream(2, (X, 0), (X, 10), (X, 7)), ValueError, "offset"),
    ("TopK", "largest str", lambda: TopK(2, largest="False"), TypeError, "largest"),
    ("TopK", "largest None", lambda: TopK(2, largest=None), TypeError, "largest"),
    ("TopK", "k float", lambda: TopK(2.0), TypeError, "k must be"),
    ("TopK", "k < 0", lambda: TopK(-1), ValueError, "k must be"),
    ("TopK", "nan_policy", lambda: TopK(2, nan_policy="drop"), ValueError, "nan_policy"),
    ("TopK.update", "chunk list", lambda: _topk_stream(2, ([1.0, 2.0], None)), TypeError, "chunk"),
    ("TopK.update", "chunk 2-D", lambda: _topk_stream(2, (np.ones((2, 2)), None)), ValueError, "chunk"),
    ("TopK.update", "chunk int", lambda: _topk_stream(2, (np.arange(3), None)), TypeError, "chunk"),
    ("TopK.update", "chunk longdouble", lambda: _topk_stream(2, (X.astype(np.longdouble), None)),
     TypeError, "chunk"),
    ("TopK.update", "chunk NaN", lambda: _topk_stream(2, (np.array([np.nan, 1.0, 2.0]), None)),
     ValueError, "chunk contains 1 NaN"),
    ("TopK.update", "offset < 0", lambda: _topk_stream(2, (X, -1)), ValueError, "offset"),
    ("TopK.update", "offset float", lambda: _topk_stream(2, (X, 1.0)), ValueError, "offset"),
    ("TopK.update", "offset str", lambda: _topk_stream(2, (X, "1")), ValueError, "offset"),
    ("TopK.update", "numpy then torch", lambda: _topk_stream(2, (X, None), (torch.tensor(X), None)),
     TypeError, "chunk"),
    ("TopK.result", "fewer than k", lambda: _topk_stream(6, (X, None)), ValueError, "k=6"),
    # ---- PoolOutputs
    ("PoolOutputs", "logits list", lambda: PoolOutputs(L().tolist()), TypeError, "logits"),
    ("PoolOutputs", "logits int", lambda: PoolOutputs(L().astype(np.int64)), TypeError, "logits"),
    ("PoolOutputs", "logits int tensor", lambda: PoolOutputs(torch.zeros(3, 3, dtype=torch.int64)),
     TypeError, "logits"),
    ("PoolOutputs", "logits complex", lambda: PoolOutputs(torch.zeros(3, 3, dtype=torch.complex64)),
     TypeError, "logits"),
    ("PoolOutputs", "logits longdouble", lambda: PoolOutputs(L(dtype=np.longdouble)), TypeError, "logits"),
    ("PoolOutputs", "logits 1-D", lambda: PoolOutputs(L()[:, 0]), ValueError, "logits"),
    ("PoolOutputs", "logits one class", lambda: PoolOutputs(L()[:, :1]), ValueError, "logits"),
    ("PoolOutputs", "embeddings longdouble", lambda: PoolOutputs(L(), E(dtype=np.longdouble)),
     TypeError, "embeddings"),
    ("PoolOutputs", "embeddings rows", lambda: PoolOutputs(L(), E(5)), ValueError, "embeddings"),
    ("PoolOutputs", "embeddings 3-D", lambda: PoolOutputs(L(), E()[:, :, None]), ValueError, "embeddings"),
    ("PoolOutputs", "embeddings int", lambda: PoolOutputs(L(), E().astype(np.int32)), TypeError, "embeddings"),
    ("PoolOutputs", "mc_logits shape", lambda: PoolOutputs(L(), mc_logits=MC(5)), ValueError, "mc_logits"),
    ("PoolOutputs", "mc_logits 2-D", lambda: PoolOutputs(L(), mc_logits=L()), ValueError, "mc_logits"),
    ("PoolOutputs", "mc_logits longdouble", lambda: PoolOutputs(L(), mc_logits=MC(dtype=np.longdouble)),
     TypeError, "mc_logits"),
    ("PoolOutputs", "head not a module", lambda: PoolOutputs(L(), head=3), TypeError, "head"),
    ("PoolOutputs", "n_mc 1", lambda: PoolOutputs(L(), n_mc=1), ValueError, "n_mc"),
    ("PoolOutputs", "n_mc float", lambda: PoolOutputs(L(), n_mc=2.5), TypeError, "n_mc"),
]


# ---- strategies.select / strategies.score, every strategy
_SEEDED = ("kmeans", "badge", "random")


def _select(name, p=None, k=2, **kw):
    return S.select(name, pool() if p is None else p, k, **kw)


def _head_wrong_in():
    return torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(D + 1, C))


for _name in S.names():
    BAD += [
        ("strategies.select", f"{_name}: pool ndarray", lambda n=_name: S.select(n, L(), 2), TypeError, "pool"),
        ("strategies.select", f"{_name}: pool empty", lambda n=_name: _select(n, pool(logits=L(0), embeddings=E(0),
                                                                                  mc_logits=MC(0))),
         ValueError, "pool is empty"),
        ("strategies.select", f"{_name}: k=0", lambda n=_name: _select(n, k=0), ValueError, "k must be"),
        ("strategies.select", f"{_name}: k > n_pool", lambda n=_name: _select(n, k=N + 1), ValueError, "k must be"),
        ("strategies.select", f"{_name}: k float", lambda n=_name: _select(n, k=2.0), TypeError, "k must be"),
        ("strategies.select", f"{_name}: k bool", lambda n=_name: _select(n, k=True), TypeError, "k must be"),
        ("strategies.select", f"{_name}: seed < 0", lambda n=_name: _select(n, seed=-1), ValueError, "seed"),
        ("strategies.select", f"{_name}: seed float", lambda n=_name: _select(n, seed=1.5), ValueError, "seed"),
        ("strategies.select", f"{_name}: labeled ndarray", lambda n=_name: _select(n, labeled=E()),
         TypeError, "labeled"),
        ("strategies.select", f"{_name}: labeled empty", lambda n=_name: _select(n, labeled=labeled(0)),
         ValueError, "labeled is empty"),
        ("strategies.select", f"{_name}: labeled n_features", lambda n=_name: _select(n, labeled=labeled(d=D + 1)),
         ValueError, "labeled.embeddings"),
    ]
for _name in S.NEEDS_EMBEDDINGS:
    BAD += [
        ("strategies.select", f"{_name}: no embeddings", lambda n=_name: _select(n, pool(embeddings=None)),
         ValueError, "pool.embeddings"),
    ]
for _name in ("kmeans", "coreset"):
    BAD += [
        ("strategies.select", f"{_name}: NaN embeddings",
         lambda n=_name: _select(n, pool(embeddings=np.where(E() > 1, np.nan, E()))), ValueError, "pool.embeddings"),
        ("strategies.select", f"{_name}: float64 embeddings beyond float32",
         lambda n=_name: _select(n, pool(embeddings=np.where(E() > 1, 1e300, E(dtype=np.float64)))),
         ValueError, "pool.embeddings overflow float32"),
    ]
for _name in ("entropy", "margin", "least_confidence"):  # the ones that read logits
    BAD += [
        ("strategies.score", f"{_name}: pool ndarray", lambda n=_name: S.score(n, L()), TypeError, "pool"),
        ("strategies.score", f"{_name}: NaN logits",
         lambda n=_name: S.score(n, pool(logits=np.where(L() > 1, np.nan, L()))), ValueError, "logits contain NaN"),
        ("strategies.score", f"{_name}: float64 logits beyond float32",
         lambda n=_name: S.score(n, pool(logits=HUGE64)), ValueError, "logits overflow float32"),
        ("strategies.select", f"{_name}: float64 logits beyond float32",
         lambda n=_name: _select(n, pool(logits=HUGE64)), ValueError, "logits overflow float32"),
    ]
for _name in S.MC_BASED:
    BAD += [
        ("strategies.select", f"{_name}: no mc_logits, no head", lambda n=_name: _select(n, pool(mc_logits=None)),
         ValueError, "mc_logits"),
        ("strategies.select", f"{_name}: mc_logits with 1 pass", lambda n=_name: _select(n, pool(mc_logits=MC(t=1))),
         ValueError, "mc_logits"),
        ("strategies.select", f"{_name}: float64 mc_logits beyond float32",
         lambda n=_name: _select(n, pool(mc_logits=np.where(MC() > 1, 1e300, MC(dtype=np.float64)))),
         ValueError, "mc_logits overflow float32"),
        ("strategies.select", f"{_name}: head for other embeddings",
         lambda n=_name: _select(n, pool(mc_logits=None, head=_head_wrong_in())), ValueError, "pool.head"),
        ("strategies.select", f"{_name}: head giving other classes",
         lambda n=_name: _select(n, pool(mc_logits=None, head=torch.nn.Linear(D, C + 1))), ValueError, "pool.head"),
    ]
BAD += [
    ("strategies.select", "name unknown", lambda: _select("nope"), ValueError, "name must be"),
    ("strategies.select", "name not a str", lambda: _select(3), ValueError, "name must be"),
    ("strategies.select", "group without torch.distributed", lambda: _select("entropy", group="x"),
     ValueError, "group"),
    ("strategies.select", "coreset: labeled without embeddings",
     lambda: _select("coreset", labeled=PoolOutputs(L(12))), ValueError, "labeled.embeddings"),
    ("strategies.score", "name not uncertainty", lambda: S.score("kmeans", pool()), ValueError, "name must be"),
]


def _with_env(env, value, fn):
    """Call fn with os.environ[env] = value and the backend caches cleared (restored after)."""
    import os

    from autoal_fast import _backend

    old = os.environ.get(env)
    os.environ[env] = value
    _backend.has_triton.cache_clear(), _backend.faiss_module.cache_clear()
    try:
        return fn()
    finally:
        if old is None:
            del os.environ[env]
        else:
            os.environ[env] = old
        _backend.has_triton.cache_clear(), _backend.faiss_module.cache_clear()


BAD += [
    ("backend_report", "AUTOAL_FAST_FAISS=maybe", lambda: _with_env("AUTOAL_FAST_FAISS", "maybe", aaf.backend_report),
     ValueError, "AUTOAL_FAST_FAISS"),
    ("backend_report", "AUTOAL_FAST_TRITON=2", lambda: _with_env("AUTOAL_FAST_TRITON", "2", aaf.backend_report),
     ValueError, "AUTOAL_FAST_TRITON"),
]


def _assert_topk(expect_values, expect_indices):
    def check(res):
        v, i = res
        if isinstance(v, torch.Tensor):
            v, i = v.double().numpy(), i.numpy()
        np.testing.assert_array_equal(i, expect_indices)
        np.testing.assert_array_equal(np.asarray(v, dtype=np.float64), expect_values)
    return check


def _memmap(tmp_dir, arr):
    path = tmp_dir / "x.npy"
    np.save(path, arr)
    return np.load(path, mmap_mode="r")


# (entry point, case id, call, check of the result) for legal edge cases
EDGE = [
    ("topk", "negative strides", lambda: topk(X[::-1], 2), _assert_topk([9.0, 5.0], [1, 4])),
    ("topk", "big-endian float64", lambda: topk(X.astype(">f8"), 2), _assert_topk([9.0, 5.0], [3, 0])),
    ("topk", "big-endian float32", lambda: topk(X.astype(">f4"), 2), _assert_topk([9.0, 5.0], [3, 0])),
    ("topk", "float16", lambda: topk(X.astype(np.float16), 2), _assert_topk([9.0, 5.0], [3, 0])),
    ("topk", "bfloat16 tensor", lambda: topk(torch.tensor(X).bfloat16(), 2), _assert_topk([9.0, 5.0], [3, 0])),
    ("topk", "positive-stride view", lambda: topk(np.arange(8.0)[::2], 2), _assert_topk([6.0, 4.0], [3, 2])),
    ("topk", "tensor needing grad", lambda: topk(torch.tensor(X, requires_grad=True), 1),
     _assert_topk([9.0], [3])),
    ("topk", "empty, k=0", lambda: topk(np.empty(0), 0), _assert_topk([], [])),
    ("topk", "numpy bool largest", lambda: topk(X, 1, largest=np.bool_(False)), _assert_topk([1.0], [4])),
    ("topk", "float64 beyond float32", lambda: topk(np.array([1e300, -1e300, 0.0]), 1),
     _assert_topk([1e300], [0])),
    ("TopK", "chunks out of order, with gaps",
     lambda: _topk_stream(3, (np.array([1.0, 2.0]), 10), (np.array([7.0, 2.0]), 0), (np.array([2.0]), 5)),
     _assert_topk([7.0, 2.0, 2.0], [0, 1, 5])),
    ("TopK", "chunk filling a gap exactly",
     lambda: _topk_stream(5, (X[:2], 0), (X[:2], 4), (X[:2], 2)), _assert_topk([5, 5, 5, 4, 4], [0, 2, 4, 1, 3])),
    ("TopK", "empty chunks anywhere", lambda: _topk_stream(1, (X[:0], 3), (X, 0), (X[:0], 2)),
     _assert_topk([9.0], [3])),
    ("TopK", "big-endian, negative-stride chunks", lambda: _topk_stream(2, (X.astype(">f8")[::-1], None)),
     _assert_topk([9.0, 5.0], [1, 4])),
    ("TopK", "k=0 with no chunk", lambda: _topk_stream(0), _assert_topk([], [])),
    ("TopK", "largest=False", lambda: _topk_stream(2, (X, None), largest=False), _assert_topk([1.0, 3.0], [4, 2])),
]

EDGE += [
    ("backend_report", "AUTOAL_FAST_FAISS=false", lambda: _with_env("AUTOAL_FAST_FAISS", "false", aaf.backend_report),
     lambda r: r["faiss"] is False and r["faiss_gpu"] is False),
    ("backend_report", "AUTOAL_FAST_TRITON=OFF", lambda: _with_env("AUTOAL_FAST_TRITON", "OFF", aaf.backend_report),
     lambda r: r["triton"] is False),
]


def _pool_same_as(expected_logits, expected_emb=None):
    def check(p):
        assert isinstance(p, PoolOutputs)
        np.testing.assert_array_equal(p.logits.numpy(), expected_logits)
        if expected_emb is not None:
            np.testing.assert_array_equal(p.embeddings.numpy(), expected_emb)
    return check


EDGE += [
    ("PoolOutputs", "negative strides", lambda: PoolOutputs(L()[::-1], E()[::-1]),
     _pool_same_as(L()[::-1].copy(), E()[::-1].copy())),
    ("PoolOutputs", "big-endian", lambda: PoolOutputs(L().astype(">f4"), E().astype(">f8")),
     _pool_same_as(L(), E().astype(np.float64))),
    ("PoolOutputs", "non-contiguous positive strides", lambda: PoolOutputs(L(2 * N)[::2], E(2 * N)[::2]),
     _pool_same_as(L(2 * N)[::2], E(2 * N)[::2])),
    ("PoolOutputs", "0 rows (an empty shard)", lambda: PoolOutputs(L(0), E(0)), lambda p: len(p) == 0),
]


# ---- AutoAL: constructor, fit, query, query_model, load_state_dict
from autoal_fast import AutoAL  # noqa: E402

_FAST = dict(pretrain_steps=2, search_steps=2)


def _al(**kw):
    return AutoAL(strategies=("entropy", "margin"), seed=0, **_FAST, **kw)


def _fitted():
    al = _al()
    al.fit(labeled(), np.arange(12) % C)
    return al


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Linear(4, D)
        self.out = torch.nn.Linear(D, C)

    def forward(self, x):
        e = torch.relu(self.emb(x))
        return self.out(e), e


_DATA = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))


def _qm(lab_ids, unl_ids, labels=None, k=2):
    lab_ids_ = np.asarray(lab_ids)
    labels = np.arange(len(lab_ids_)) % C if labels is None else labels
    return _al().query_model(_Model(), _DATA, lab_ids, labels, unl_ids, k)


def _credit_queried():
    """A credit AutoAL after one fit and a query of 2: the next fit's new= is checked."""
    al = _al(credit="effect")
    al.fit(labeled(), np.arange(12) % C)
    al.query(pool(), 2)
    return al


def _load(state):
    return _al().load_state_dict(state)


def _state_with(**changes):
    st = _fitted().state_dict()
    for key, v in changes.items():
        if v is KeyError:
            del st[key]
        else:
            st[key] = v
    return st


_CUDA = torch.cuda.is_available()
BAD += [
    ("AutoAL", "strategies None", lambda: AutoAL(strategies=None), TypeError, "strategies"),
    ("AutoAL", "objective unknown", lambda: AutoAL(objective="hardest"), ValueError, "objective"),
    ("AutoAL", "prior not a candidate", lambda: AutoAL(strategies=["entropy"], prior="badge"), ValueError, "prior"),
    ("AutoAL", "prior wrong length", lambda: AutoAL(strategies=["entropy", "margin"], prior=[1.0]), ValueError,
     "prior"),
    ("AutoAL", "prior negative", lambda: AutoAL(strategies=["entropy", "margin"], prior=[-1, 2]), ValueError, "prior"),
    ("AutoAL", "judge_share 0", lambda: AutoAL(judge_share=0), ValueError, "judge_share"),
    ("AutoAL", "inner_steps 0", lambda: AutoAL(inner_steps=0), ValueError, "inner_steps"),
    ("AutoAL", "strategies ints", lambda: AutoAL(strategies=[1, 2]), ValueError, "strategies"),
    ("AutoAL", "strategies empty", lambda: AutoAL(strategies=[]), ValueError, "strategies"),
    ("AutoAL", "strategies repeated", lambda: AutoAL(strategies=["entropy", "entropy"]), ValueError, "strategies"),
    ("AutoAL", "strategies unknown", lambda: AutoAL(strategies=["entropyy"]), ValueError, "strategies"),
    ("AutoAL", "device string", lambda: AutoAL(device="gpu"), ValueError, "device"),
    ("AutoAL", "device list", lambda: AutoAL(device=[0]), TypeError, "device"),
    ("AutoAL", "device meta", lambda: AutoAL(device="meta"), ValueError, "device"),
    ("AutoAL", "budget 0", lambda: AutoAL(budget=0), ValueError, "budget"),
    ("AutoAL", "seed < 0", lambda: AutoAL(seed=-1), ValueError, "seed"),
    ("AutoAL", "warm_start str", lambda: AutoAL(warm_start="no"), TypeError, "warm_start"),
    ("AutoAL", "warm_start_fitnet str", lambda: AutoAL(warm_start_fitnet="yes"), TypeError, "warm_start_fitnet"),
    ("AutoAL", "compile str", lambda: AutoAL(compile="False"), TypeError, "compile"),
    ("AutoAL", "dropout 1", lambda: AutoAL(dropout=1.0), ValueError, "dropout"),
    ("AutoAL", "temperature str", lambda: AutoAL(temperature="0.1"), ValueError, "temperature"),
    ("AutoAL", "theta inf", lambda: AutoAL(theta=float("inf")), ValueError, "theta"),
    ("AutoAL", "backbone int", lambda: AutoAL(backbone=3), TypeError, "backbone"),
    ("AutoAL", "mc_head", lambda: AutoAL(mc_head="x"), ValueError, "mc_head"),
    ("AutoAL.fit", "labeled ndarray", lambda: _al().fit(L(), np.zeros(N, int)), TypeError, "labeled"),
    ("AutoAL.fit", "y float", lambda: _al().fit(labeled(), np.zeros(12)), TypeError, "y"),
    ("AutoAL.fit", "y out of range", lambda: _al().fit(labeled(), np.full(12, C)), ValueError, "y must hold"),
    ("AutoAL.fit", "y negative", lambda: _al().fit(labeled(), np.full(12, -1)), ValueError, "y must hold"),
    ("AutoAL.fit", "y length", lambda: _al().fit(labeled(), np.zeros(5, int)), ValueError, "y must have"),
    ("AutoAL.fit", "no embeddings", lambda: _al().fit(PoolOutputs(L(12)), np.zeros(12, int)),
     ValueError, "labeled.embeddings"),
    ("AutoAL.fit", "zero-width embeddings", lambda: _al().fit(PoolOutputs(L(12), E(12, 0)), np.zeros(12, int)),
     ValueError, "labeled.embeddings"),
    ("AutoAL.fit", "NaN embeddings",
     lambda: _al().fit(PoolOutputs(L(12), np.where(E(12) > 1, np.nan, E(12))), np.zeros(12, int)),
     ValueError, "labeled.embeddings contain NaN"),
    ("AutoAL.fit", "float64 embeddings beyond float32",
     lambda: _al().fit(PoolOutputs(L(12), np.where(E(12) > 1, 1e300, E(12, dtype=np.float64))), np.zeros(12, int)),
     ValueError, "labeled.embeddings overflow float32"),
    ("AutoAL.fit", "k = 0", lambda: _al().fit(labeled(), np.zeros(12, int), k=0, n_pool=10), ValueError, "k must"),
    ("AutoAL", "credit unknown", lambda: AutoAL(credit="error"), ValueError, "credit"),
    ("AutoAL", "credit with max_loss", lambda: AutoAL(credit="effect", objective="max_loss"), ValueError, "credit"),
    ("AutoAL", "credit_weight < 0", lambda: AutoAL(credit_weight=-1), ValueError, "credit_weight"),
    ("AutoAL", "explore > 0.5", lambda: AutoAL(explore=0.6), ValueError, "explore"),
    ("AutoAL", "recent_in_b str", lambda: AutoAL(recent_in_b="yes"), TypeError, "recent_in_b"),
    ("AutoAL", "explore NaN", lambda: AutoAL(explore=float("nan")), ValueError, "explore"),
    ("AutoAL.fit", "new float", lambda: _credit_queried().fit(labeled(), np.arange(12) % C, new=[10.0, 11.0]),
     ValueError, "new"),
    ("AutoAL.fit", "new 2-D", lambda: _credit_queried().fit(labeled(), np.arange(12) % C, new=[[10, 11]]),
     ValueError, "new"),
    ("AutoAL.fit", "new out of range", lambda: _credit_queried().fit(labeled(), np.arange(12) % C, new=[10, 12]),
     ValueError, "new"),
    ("AutoAL.fit", "new negative", lambda: _credit_queried().fit(labeled(), np.arange(12) % C, new=[-1, 11]),
     ValueError, "new"),
    ("AutoAL.fit", "new repeated", lambda: _credit_queried().fit(labeled(), np.arange(12) % C, new=[11, 11]),
     ValueError, "new"),
    ("AutoAL.fit", "new not the last query's size",
     lambda: _credit_queried().fit(labeled(), np.arange(12) % C, new=[9, 10, 11]), ValueError, "new must list"),
    ("AutoAL.query", "not fitted", lambda: _al().query(pool(), 2), RuntimeError, "fit"),
    ("AutoAL.query", "pool ndarray", lambda: _fitted().query(L(), 2), TypeError, "pool"),
    ("AutoAL.query", "k = 0", lambda: _fitted().query(pool(), 0), ValueError, "k must"),
    ("AutoAL.query", "k > n_pool", lambda: _fitted().query(pool(), N + 1), ValueError, "k must"),
    ("AutoAL.query", "pool empty", lambda: _fitted().query(pool(logits=L(0), embeddings=E(0), mc_logits=MC(0)), 1),
     ValueError, "pool is empty"),
    ("AutoAL.query", "other n_features", lambda: _fitted().query(pool(embeddings=E(d=D + 1)), 2),
     ValueError, "pool features"),
    ("AutoAL.query", "labeled str", lambda: _fitted().query(pool(), 2, labeled="x"), TypeError, "labeled"),
    ("AutoAL.query", "NaN embeddings", lambda: _fitted().query(pool(embeddings=np.where(E() > 1, np.nan, E())), 2),
     ValueError, "pool.embeddings contain NaN"),
    ("AutoAL.query", "float64 embeddings beyond float32",
     lambda: _fitted().query(pool(embeddings=np.where(E() > 1, 1e300, E(dtype=np.float64))), 2),
     ValueError, "pool.embeddings overflow float32"),
    ("AutoAL.query_model", "negative unlabeled id", lambda: _qm(np.arange(10), np.array([10, 11, -1])),
     ValueError, "unlabeled_ids"),
    ("AutoAL.query_model", "negative labeled id", lambda: _qm(np.array([-1, 0, 1, 2, 3]), np.arange(10, 20)),
     ValueError, "labeled_ids"),
    ("AutoAL.query_model", "unlabeled id past len(data)", lambda: _qm(np.arange(10), np.array([10, 40])),
     ValueError, "unlabeled_ids"),
    ("AutoAL.query_model", "labeled id past len(data)", lambda: _qm(np.array([0, 1, 2, 3, 99]), np.arange(10, 20)),
     ValueError, "labeled_ids"),
    ("AutoAL.query_model", "duplicate unlabeled ids", lambda: _qm(np.arange(10), np.array([10, 11, 11, 12])),
     ValueError, "unlabeled_ids must be unique"),
    ("AutoAL.query_model", "duplicate labeled ids", lambda: _qm(np.array([0, 1, 2, 3, 3]), np.arange(10, 20)),
     ValueError, "labeled_ids must be unique"),
    ("AutoAL.query_model", "empty labeled", lambda: _qm(np.array([], dtype=int), np.arange(10, 20)),
     ValueError, "labeled_ids"),
    ("AutoAL.query_model", "empty unlabeled", lambda: _qm(np.arange(10), np.array([], dtype=int)),
     ValueError, "unlabeled_ids"),
    ("AutoAL.query_model", "labeled and unlabeled overlap", lambda: _qm(np.arange(10), np.arange(8, 20)),
     ValueError, "disjoint"),
    ("AutoAL.query_model", "float ids", lambda: _qm(np.arange(10), np.arange(10, 20.0)), ValueError, "unlabeled_ids"),
    ("AutoAL.query_model", "2-D ids", lambda: _qm(np.arange(10), np.arange(10, 20).reshape(2, 5)),
     ValueError, "unlabeled_ids"),
    ("AutoAL.query_model", "model not a module", lambda: _al().query_model(3, _DATA, [0, 1], [0, 1], [2, 3], 1),
     TypeError, "model"),
    ("AutoAL.query_model", "labels length", lambda: _qm(np.arange(10), np.arange(10, 20), labels=np.zeros(3, int)),
     ValueError, "y must have"),
    ("AutoAL.load_state_dict", "a list", lambda: _load([1]), ValueError, "state"),
    ("AutoAL.load_state_dict", "an empty dict", lambda: _load({}), ValueError, "state"),
    ("AutoAL.load_state_dict", "a module's state_dict", lambda: _load(torch.nn.Linear(2, 2).state_dict()),
     ValueError, "state"),
    ("AutoAL.load_state_dict", "version only", lambda: _load({"version": 1}), ValueError, "state"),
    ("AutoAL.load_state_dict", "no fitnet", lambda: _load(_state_with(fitnet=KeyError)), ValueError, "fitnet"),
    ("AutoAL.load_state_dict", "nets empty", lambda: _load(_state_with(nets={})), ValueError, "nets"),
    ("AutoAL.load_state_dict", "fitted empty", lambda: _load(_state_with(fitted={})), ValueError, "fitted"),
    ("AutoAL.load_state_dict", "searchnet of other nets", lambda: _load(_state_with(searchnet={})),
     ValueError, "searchnet"),
    ("AutoAL.load_state_dict", "round a str", lambda: _load(_state_with(round="3")), ValueError, "round"),
    ("AutoAL.load_state_dict", "other strategies",
     lambda: AutoAL(strategies=("entropy",)).load_state_dict(_fitted().state_dict()), ValueError, "strategies"),
]
if not _CUDA:
    BAD += [
        ("AutoAL", "device cuda without CUDA", lambda: AutoAL(device="cuda"), ValueError, "device"),
        ("AutoAL", "device int without CUDA", lambda: AutoAL(device=0), ValueError, "device"),
    ]


def _same_query(res_a, res_b):
    assert torch.equal(res_a.indices, res_b.indices)
    return True


EDGE += [
    ("AutoAL", "strategies one str", lambda: AutoAL(strategies="entropy"), lambda a: a.strategies == ("entropy",)),
    ("AutoAL", "warm_start 0 / 1", lambda: AutoAL(warm_start=0, warm_start_fitnet=1, compile=np.bool_(False)),
     lambda a: a.warm_start is False and a.warm_start_fitnet is True and a.compile is False),
    ("AutoAL", "device torch.device('cpu')", lambda: AutoAL(device=torch.device("cpu")),
     lambda a: a.device == torch.device("cpu")),
    ("AutoAL.fit", "y negative strides, big-endian, list",
     lambda: [_al().fit(labeled(), y) for y in ((np.arange(24) % C)[::-2], (np.arange(12) % C).astype(">i8"),
                                                 list(np.arange(12) % C))], lambda r: len(r) == 3),
    ("AutoAL.query", "float16 / float64 / negative-stride pool",
     lambda: [_fitted().query(pool(logits=L(dtype=dt), embeddings=E(dtype=dt)), 3).indices
              for dt in (np.float16, np.float64)] + [_fitted().query(pool(logits=L()[::-1], embeddings=E()[::-1]), 3)
                                                    .indices],
     lambda r: all(i.unique().numel() == 3 for i in r)),
    ("AutoAL.fit", "new without credit: checked, then ignored",
     lambda: _al().fit(labeled(), np.arange(12) % C, new=np.array([1, 2], dtype=np.uint8)),
     lambda r: r.n_new == 0 and r.credit == {}),
    ("AutoAL.fit", "new with credit, the last query's 2",
     lambda: _credit_queried().fit(labeled(), np.arange(12) % C, new=torch.tensor([10, 11], dtype=torch.int32)),
     lambda r: r.n_new == 2 and set(r.credit) == {"entropy", "margin"}),
    ("AutoAL.query_model", "ids as list, torch, uint32",
     lambda: [_qm(lab, unl) for lab, unl in ((list(range(10)), list(range(10, 40))),
                                             (torch.arange(10), torch.arange(10, 40)),
                                             (np.arange(10, dtype=np.uint32), np.arange(10, 40, dtype=np.uint32)))],
     lambda r: all(len(set(np.asarray(x).tolist())) == 2 and min(np.asarray(x)) >= 10 for x in r)),
]


def test_failed_fit_leaves_the_fitted_state_as_it_was():
    al = _fitted()
    before = al.query(pool(), 4).indices
    with pytest.raises(ValueError, match="labeled.embeddings contain NaN"):
        al.fit(PoolOutputs(L(12), np.full((12, D), np.nan, dtype=np.float32)), np.zeros(12, int))
    assert torch.equal(al.query(pool(), 4).indices, before)


def test_failed_load_state_dict_leaves_the_state_as_it_was():
    al = _fitted()
    before = al.query(pool(), 4).indices
    bad = _fitted().state_dict()
    bad["searchnet"] = {}
    with pytest.raises(ValueError, match="searchnet"):
        al.load_state_dict(bad)
    assert torch.equal(al.query(pool(), 4).indices, before)


def test_every_public_entry_point_is_in_the_table():
    public = {"topk", "TopK", "TopK.update", "TopK.result", "PoolOutputs", "strategies.select", "strategies.score",
              "AutoAL", "AutoAL.fit", "AutoAL.query", "AutoAL.query_model", "AutoAL.load_state_dict",
              "backend_report", "cli run", "cli report"}
    # anything new in the public surface must be added above, and to the tables
    surface = set(aaf.__all__) - {"__version__", "QueryResult", "strategies"}
    assert surface <= {p.split(".")[0] for p in public}, surface
    assert set(S.__all__) - {"UNCERTAINTY", "DIVERSITY", "PAPER_CANDIDATES", "AUTOAL_CANDIDATES", "names"} <= \
        {p.split(".")[1] for p in public if p.startswith("strategies.")}
    assert {m for m in dir(AutoAL) if not m.startswith("_")} - {"state_dict", "credit_now", "memory_now", "n_pending", "get_params"} <= \
        {p.split(".")[1] for p in public if p.startswith("AutoAL.")}
    covered = {row[0] for row in BAD}
    assert public <= covered, public - covered


# ---- the autoal-fast command: a bad argument is one line "autoal-fast: error: ..." and exit 2
class CliError(Exception):
    """What ``_cli`` raises for an exit status != 0: the status and the stderr text."""

    def __init__(self, rc, err):
        super().__init__(err)
        self.rc = rc


_QUICK = ["--strategies", "random", "--rounds", "0", "--seeds", "0", "--epochs", "0", "--no-progress", "--no-plot"]


def _cli(*argv, files=None):
    """Run ``autoal-fast argv`` in a fresh folder (``files``: name -> text written there first)."""
    import contextlib
    import io
    import os
    import tempfile

    from autoal_fast import cli

    old = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            for name, text in (files or {}).items():
                os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
                with open(name, "w") as fh:
                    fh.write(text)
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    rc = cli.main(list(argv))
                except SystemExit as e:  # argparse's own errors
                    rc = e.code
            if rc:
                text = err.getvalue()
                lines = [ln for ln in text.splitlines() if ln.startswith("autoal-fast: error:")]
                assert rc == 2 and len(lines) == 1 and "Traceback" not in text, text
                if "checkpoint.pt" in str(os.listdir(".")) or any(
                        os.path.exists(os.path.join(d, "checkpoint.pt")) for d in os.listdir(".") if os.path.isdir(d)):
                    raise AssertionError("a strategy ran before the error")
                raise CliError(rc, lines[0])
            return rc
        finally:
            os.chdir(old)


_RESULTS = '{"config": {"dataset": "digits"}, "strategies": {}}'
BAD += [
    ("cli run", "--out is a file", lambda: _cli("run", *_QUICK, "--out", "f", files={"f": ""}), CliError, "--out"),
    ("cli run", "--out under a file", lambda: _cli("run", *_QUICK, "--out", "f/sub", files={"f": ""}),
     CliError, "--out"),
    ("cli run", "--out empty", lambda: _cli("run", *_QUICK, "--out", ""), CliError, "--out"),
    ("cli run", "--out under /proc", lambda: _cli("run", *_QUICK, "--out", "/proc/autoal_fast_x"), CliError, "--out"),
    ("cli run", "--pool-subsample > dataset", lambda: _cli("run", *_QUICK, "--pool-subsample", "99999", "--out", "o"),
     CliError, "pool_subsample=99999"),
    ("cli run", "--test-subsample > dataset", lambda: _cli("run", *_QUICK, "--test-subsample", "99999", "--out", "o"),
     CliError, "test_subsample=99999"),
    ("cli run", "--autoal-arg unknown key",
     lambda: _cli("run", *_QUICK[:1], "random,autoal", *_QUICK[2:], "--autoal-arg", "nosuch=1", "--out", "o"),
     CliError, "--autoal-arg"),
    ("cli run", "--autoal-arg bad value",
     lambda: _cli("run", *_QUICK[:1], "random,autoal", *_QUICK[2:], "--autoal-arg", "temperature=-1", "--out", "o"),
     CliError, "--autoal-arg"),
    ("cli run", "--autoal-arg of a field the run sets",
     lambda: _cli("run", *_QUICK[:1], "random,autoal", *_QUICK[2:], "--autoal-arg", "seed=3", "--out", "o"),
     CliError, "--autoal-arg"),
    ("cli run", "--autoal-arg without autoal in the run",
     lambda: _cli("run", *_QUICK, "--autoal-arg", "warm_start=maybe", "--out", "o"), CliError, "--autoal-arg"),
    ("cli run", "--albl-arg bad value",
     lambda: _cli("run", *_QUICK[:1], "random,albl", *_QUICK[2:], "--albl-arg", "delta=5", "--out", "o"),
     CliError, "--albl-arg"),
    ("cli run", "--albl-arg unknown key",
     lambda: _cli("run", *_QUICK[:1], "random,albl", *_QUICK[2:], "--albl-arg", "gamma=0.1", "--out", "o"),
     CliError, "--albl-arg"),
    ("cli run", "--albl-arg a string",
     lambda: _cli("run", *_QUICK[:1], "random,albl", *_QUICK[2:], "--albl-arg", "delta=half", "--out", "o"),
     CliError, "--albl-arg"),
    ("cli report", "not JSON", lambda: _cli("report", "bad.json", "--out", "r", files={"bad.json": "{bad"}),
     CliError, "bad.json"),
    ("cli report", "JSON list", lambda: _cli("report", "l.json", "--out", "r", files={"l.json": "[1]"}),
     CliError, "l.json"),
    ("cli report", "JSON without config", lambda: _cli("report", "d.json", "--out", "r", files={"d.json": '{"a": 1}'}),
     CliError, "d.json"),
    ("cli report", "not UTF-8", lambda: _cli("report", "b.json", "--out", "r", files={"b.json": "\udcff"})
     if False else _cli_bytes(), CliError, "b.json"),
    ("cli report", "folder without results.json", lambda: _cli("report", "d", "--out", "r", files={"d/x": ""}),
     CliError, "d/results.json"),
    ("cli report", "--out is a file",
     lambda: _cli("report", "a.json", "--out", "f", files={"a.json": _RESULTS, "f": ""}), CliError, "--out"),
]


def _cli_bytes():
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "b.json")
        with open(path, "wb") as fh:
            fh.write(b"\xff\xfe{")
        return _cli("report", path, "--out", os.path.join(tmp, "r"))


EDGE += [
    ("cli run", "--pool-subsample = dataset size, --out made", lambda: _cli("run", *_QUICK, "--pool-subsample", "1297",
                                                                             "--out", "a/b/c"), lambda rc: rc == 0),
]


def _ids(rows):
    return [f"{r[0]}: {r[1]}" for r in rows]


@pytest.mark.parametrize("entry,case,call,exc,needle", BAD, ids=_ids(BAD))
def test_bad_input_raises_naming_the_argument(entry, case, call, exc, needle):
    with pytest.raises(exc) as info:
        call()
    assert needle in str(info.value), f"{entry} ({case}): {info.value!s}"


@pytest.mark.parametrize("entry,case,call,check", EDGE, ids=_ids(EDGE))
def test_legal_edge_case(entry, case, call, check):
    res = call()
    assert check(res) is not False


def test_memmap_pool_is_not_copied(tmp_path):
    mm = _memmap(tmp_path, L())
    p = PoolOutputs(mm)
    assert p.logits.data_ptr() == mm.ctypes.data  # a view, no copy


def test_topk_overlap_leaves_the_state_as_it_was():
    s = TopK(2)
    s.update(X, 0)
    with pytest.raises(ValueError, match="offset"):
        s.update(np.array([100.0]), 4)
    s.update(np.array([100.0]), 5)
    v, i = s.result()
    assert list(i) == [5, 3] and s.seen == 6
