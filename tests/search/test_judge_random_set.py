"""AutoAL(judge="random_set"): the value objective's judge C drawn only from the labeled
samples that were drawn at random (the set AL started from), never from those AL chose."""
import numpy as np
import pytest
import torch

import autoal_fast as aaf
from autoal_fast.autoal import _find_ids, _split_with_new

from test_credit import _toy


def _plain_split_sizes(n, n_old, share):
    """The sizes _split_with_new plans before the judge is restricted: (n_a, n_c)."""
    n_c = max(2, int(round(share * n)))
    n_a = (n - n_c) // 2
    if n_a + n_c > n_old:
        scale = n_old / (n_a + n_c)
        n_c = max(2, int(n_c * scale))
        n_a = max(2, min(n_old - n_c, int(n_a * scale)))
    return n_a, n_c


@pytest.mark.parametrize("n,n_new,n_rand,seed", [(40, 10, 20, 0), (50, 0, 5, 1), (220, 20, 20, 2),
                                                  (300, 100, 150, 3), (12, 4, 3, 4), (9, 3, 6, 5)])
def test_judge_comes_from_the_random_set_only(n, n_new, n_rand, seed):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    new = torch.arange(n - n_new, n)
    rand = torch.randperm(n - n_new, generator=g)[:n_rand]  # random positions among the older ones
    ia, ib, ic = _split_with_new(perm, new if n_new else None, n, 1 / 3, judge_from=rand)
    assert sorted(torch.cat([ia, ib, ic]).tolist()) == list(range(n))  # a partition
    assert set(ic.tolist()) <= set(rand.tolist())  # C only from the random set
    assert set(new.tolist()) <= set(ib.tolist())  # last round's batch stays in B
    n_a, n_c = _plain_split_sizes(n, n - n_new, 1 / 3)
    assert ic.numel() == min(n_c, n_rand) and ia.numel() == n_a
    # C takes the random set's samples in the permutation's order (latest first from the end)
    order = [int(i) for i in perm if int(i) in set(rand.tolist())]
    assert ic.tolist() == order[len(order) - ic.numel():]


def test_judge_from_too_few_random_samples_keeps_the_plain_split():
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    new = torch.arange(20, 30)
    plain = _split_with_new(perm, new, 30, 1 / 3)
    for few in (torch.tensor([25]), torch.tensor([3]), torch.tensor([], dtype=torch.long),
                torch.tensor([21, 22, 23])):  # one old sample, none, or only new ones
        got = _split_with_new(perm, new, 30, 1 / 3, judge_from=few)
        for a, b in zip(plain, got):
            assert torch.equal(a, b)
    # no judge at all (max_loss): judge_from changes nothing
    for a, b in zip(_split_with_new(perm, new, 30, 0.0), _split_with_new(perm, new, 30, 0.0,
                                                                          judge_from=torch.arange(10))):
        assert torch.equal(a, b)


def test_find_ids_against_a_plain_lookup():
    g = torch.Generator().manual_seed(3)
    ids = torch.randperm(1000, generator=g)[:300]
    want = torch.cat([ids[torch.randperm(300, generator=g)[:50]], torch.tensor([1000, 1001, -5])])
    pos, found = _find_ids(ids.numpy(), want)
    where = {int(v): i for i, v in enumerate(ids)}
    assert found.tolist() == [int(w) in where for w in want]
    assert [int(p) for p, f in zip(pos, found) if f] == [where[int(w)] for w in want if int(w) in where]
    pos, found = _find_ids(np.zeros(0, dtype=np.int64), torch.tensor([1, 2]))
    assert not bool(found.any())


def test_fit_uses_the_random_set_and_names_it_in_errors():
    lab, y = _toy(60, 0)
    kw = dict(strategies=("entropy", "margin"), seed=1, pretrain_steps=5, search_steps=5)
    al = aaf.AutoAL(judge="random_set", **kw)
    with pytest.raises(ValueError, match="random_set="):
        al.fit(lab, y, k=5, n_pool=100)
    with pytest.raises(ValueError, match="random_set must hold positions in \\[0, 60\\)"):
        al.fit(lab, y, k=5, n_pool=100, random_set=[0, 60])
    with pytest.raises(ValueError, match="random_set must not repeat"):
        al.fit(lab, y, k=5, n_pool=100, random_set=[1, 1, 2])
    with pytest.raises(ValueError, match="random_set must be a 1-D"):
        al.fit(lab, y, k=5, n_pool=100, random_set=[0.5, 1.0])
    with pytest.raises(ValueError, match="judge must be"):
        aaf.AutoAL(judge="test", **kw)
    with pytest.raises(ValueError, match="judge='random_set' needs objective='value'"):
        aaf.AutoAL(judge="random_set", objective="max_loss", **kw)
    # 12 random samples: C is all of them (the plain C would be 20), A the plain 20
    rep = al.fit(lab, y, k=5, n_pool=100, random_set=range(12))
    assert rep.n_a == 20 and rep.n_b == 60 - 20 - 12
    # the default judge ignores random_set (checked all the same)
    r1 = aaf.AutoAL(**kw).fit(lab, y, k=5, n_pool=100)
    r2 = aaf.AutoAL(**kw).fit(lab, y, k=5, n_pool=100, random_set=range(12))
    assert r1.value == r2.value and (r1.n_a, r1.n_b) == (r2.n_a, r2.n_b)
    with pytest.raises(ValueError, match="random_set"):
        aaf.AutoAL(**kw).fit(lab, y, k=5, n_pool=100, random_set=[[0, 1]])


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body, self.out = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU()), torch.nn.Linear(6, 3)

    def forward(self, x):
        e = self.body(x)
        return self.out(e), e


def test_query_model_judges_on_the_first_labeled_set_and_keeps_it_in_the_state(monkeypatch):
    data = torch.randn(150, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 3, (150,), generator=torch.Generator().manual_seed(1))
    kw = dict(strategies=("entropy", "margin"), seed=0, pretrain_steps=5, search_steps=5, judge="random_set")
    al = aaf.AutoAL(**kw)
    seen = []
    fit = aaf.AutoAL.fit

    def spy(self, *a, **k):
        seen.append(None if k.get("random_set") is None else torch.as_tensor(k["random_set"]).clone())
        return fit(self, *a, **k)

    monkeypatch.setattr(aaf.AutoAL, "fit", spy)
    first = np.arange(100, 130)  # the set AL starts from
    got = al.query_model(_Model(), data, first, labels[first].numpy(), np.arange(100), k=10)
    assert seen[-1].tolist() == list(range(30))
    lab2 = np.concatenate([got, first[::-1]])  # any order: found by id
    unl2 = np.setdiff1d(np.arange(150), lab2)
    al2 = aaf.AutoAL(**kw).load_state_dict(al.state_dict())  # the random set survives a reload
    got2 = al2.query_model(_Model(), data, lab2, labels[lab2].numpy(), unl2, k=10)
    pos = seen[-1]
    assert sorted(lab2[pos.numpy()].tolist()) == first.tolist()
    assert al2.report_.n_new == 10 and len(set(got2.tolist()) & set(lab2.tolist())) == 0
