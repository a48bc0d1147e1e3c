"""ALBL: Active Learning By Learning (Hsu & Lin, AAAI 2015), batch-mode.

The method-selection baseline of the AutoAL paper: a bandit learns online which
query strategy to follow. Hsu & Lin cast each strategy as an *expert* giving
advice (a distribution over the unlabeled samples), run EXP4.P (Beygelzimer et
al., 2011) over the experts, query the sample the bandit draws, and reward the
bandit with the *importance-weighted accuracy* (IW-ACC) of the updated model:
each queried sample x_j counts 1/q_j, q_j the probability it had of being
queried, which makes the weighted accuracy an unbiased estimate of the model's
accuracy on the pool. RAND is one of the strategies, so that every sample keeps
a non-zero query probability.

Batch mode, as implemented here (one bandit step per AL round, k queries):

- Expert i advises its batch B_i (its ``strategies.select`` picks, k of them):
  xi_i(x) = 1/k on B_i; the ``random`` expert advises uniform xi(x) = 1/|U|.
- The bandit follows expert i with probability
  P_i = (1 - N p_min) w_i / sum(w) + p_min and queries that expert's batch
  (a fresh uniform batch for ``random``). Per-draw probability of a sample:
  p(x) = sum_i P_i xi_i(x); probability it is in the batch: q(x) = k p(x).
- Reward of the model f_t trained at round t: IW-ACC on the batch B_t queried
  at round t, r_t = sum_{x in B_t} [f_t(x) = y] / q(x) / |U_t|, clipped to [0, 1].
  It is the reward of the arm chosen at round t-1 (whose labels made f_t).
  Hsu & Lin evaluate IW-ACC on all queried samples, which f_t was trained on;
  that is an unbiased estimate for their (regularised) SVMs but ~1 for every
  arm with a deep net that fits its training set. B_t is drawn after f_t is
  trained and is labeled anyway, so the estimate stays unbiased and costs
  nothing extra. This is the one deliberate change.
- EXP4.P update with the batch as b draws:
  yhat_i = (1/k) sum_{x in B} xi_i(x) r / p(x), vhat_i = (1/k) sum_{x in U} xi_i(x) / p(x),
  w_i <- w_i exp(p_min / 2 * (yhat_i + vhat_i sqrt(ln(N / delta) / (K T)))), K = |U| the number of
  actions (samples), as in EXP4.P. The uniform ``random`` expert has vhat ~ |U| / (k P_random), so
  its optimism bonus is the largest while the bandit has seen few rounds (EXP4.P's own behaviour).
  With disjoint batches this is exactly EXP4.P over N arms (yhat = r / P_i for
  the chosen arm); overlapping batches share the credit, as advice does in EXP4.P.
- p_min = min(sqrt(ln N / (N T)), 1 / (2 N)) by default (EXP4.P's choice, kept
  below 1/N so the mixture stays a distribution), T = the number of rounds.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["ALBL"]


class ALBL:
    """Batch-mode ALBL bandit over query strategies.

    Parameters
    ----------
    candidates : sequence of str
        Strategy names (``autoal_fast.strategies.names()``); ``"random"`` is
        added when absent (ALBL needs it for exploration).
    n_rounds : int
        T, the number of bandit steps (AL rounds) planned.
    delta : float, default=0.1
        EXP4.P's confidence parameter.
    p_min : float, default=None
        Minimum arm probability; default ``min(sqrt(ln N / (N T)), 1 / (2 N))``.
    """

    def __init__(self, candidates, n_rounds: int, delta: float = 0.1, p_min=None):
        arms = list(dict.fromkeys(candidates))
        if "random" not in arms:
            arms.append("random")
        if len(arms) < 2:
            raise ValueError(f"ALBL needs at least one candidate besides 'random'; got {list(candidates)}")
        if not (0.0 < delta < 1.0):
            raise ValueError(f"delta must be in (0, 1) (ALBL); got {delta}")
        n = len(arms)
        t = max(int(n_rounds), 1)
        if p_min is None:
            p_min = min(math.sqrt(math.log(n) / (n * t)), 1.0 / (2 * n))
        if not (0.0 <= p_min <= 1.0 / n):
            raise ValueError(f"p_min must be in [0, 1/N = {1.0 / n:.4g}] (ALBL); got {p_min}")
        self.arms = arms
        self.n_rounds = t
        self.delta = float(delta)
        self.p_min = float(p_min)
        self.log_w = [0.0] * n  # log-weights (stable for long runs)
        self.pending = None  # the last step, waiting for its reward
        self.history = []  # per round: chosen arm, arm probabilities, reward it got

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"arms": list(self.arms), "n_rounds": self.n_rounds, "delta": self.delta, "p_min": self.p_min,
                "log_w": list(self.log_w), "pending": self.pending, "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: dict) -> None:
        if list(state["arms"]) != self.arms:
            raise ValueError(f"ALBL state has arms {state['arms']}, this bandit has {self.arms}")
        self.n_rounds, self.delta, self.p_min = state["n_rounds"], state["delta"], state["p_min"]
        self.log_w = list(state["log_w"])
        self.pending = state["pending"]
        self.history = [dict(h) for h in state["history"]]

    def arm_probabilities(self) -> np.ndarray:
        lw = np.asarray(self.log_w, dtype=np.float64)
        w = np.exp(lw - lw.max())
        n = len(self.arms)
        return (1.0 - n * self.p_min) * w / w.sum() + self.p_min

    # ------------------------------------------------------------------ one round
    def query(self, pool, k: int, labeled=None, seed: int = 0, labels=None) -> torch.Tensor:
        """Pick k samples of ``pool`` and learn from the previous step's reward.

        Parameters
        ----------
        pool, labeled : PoolOutputs
            The unlabeled pool and the labeled set, as ``strategies.select`` takes them.
        k : int
        seed : int
            Seeds the arm draw and the seeded strategies.
        labels : callable
            The oracle: ``labels(indices) -> LongTensor`` of true labels for
            pool indices (only the queried batch is asked).

        Returns
        -------
        torch.LongTensor of shape (k,): unique indices into ``pool``.
        """
        from .. import strategies

        n_u = pool.n_samples
        rng = np.random.default_rng(seed)
        advice = {}
        for i, name in enumerate(self.arms):
            if name != "random":
                advice[name] = strategies.select(name, pool, k, labeled=labeled, seed=seed + 1 + i).cpu().numpy()
        probs = self.arm_probabilities()
        # per-draw probability of each pool sample under the mixture
        p = np.zeros(n_u, dtype=np.float64)
        for i, name in enumerate(self.arms):
            if name == "random":
                p += probs[i] / n_u
            else:
                p[advice[name]] += probs[i] / k
        arm = int(rng.choice(len(self.arms), p=probs))
        name = self.arms[arm]
        if name == "random":
            batch = rng.choice(n_u, size=k, replace=False)
        else:
            batch = advice[name]
        batch = np.asarray(batch, dtype=np.int64)
        p_b = p[batch]
        # reward of the model that made these outputs: IW-ACC on the fresh batch
        y = labels(torch.from_numpy(batch)).cpu().numpy()
        pred = pool.logits[torch.from_numpy(batch).to(pool.logits.device)].argmax(dim=1).cpu().numpy()
        q = np.minimum(1.0, k * p_b)
        reward = float(np.clip(((pred == y) / q).sum() / n_u, 0.0, 1.0))
        if self.pending is not None:
            self._update(reward)
            self.history[-1]["reward"] = reward
        # remember this step: xi_i(x) / p(x) on the batch for every arm, and vhat_i
        xi_over_p, vhat = [], []
        for i, a in enumerate(self.arms):
            if a == "random":
                xi_b = np.full(k, 1.0 / n_u)
                vhat.append(float((1.0 / n_u / p).sum() / k))
            else:
                member = np.zeros(n_u, dtype=bool)
                member[advice[a]] = True
                xi_b = member[batch] / k
                vhat.append(float((1.0 / k / p[advice[a]]).sum() / k))
            xi_over_p.append((xi_b / p_b).tolist())
        self.pending = {"xi_over_p": xi_over_p, "vhat": vhat, "n_actions": n_u}
        self.history.append({"arm": name, "probabilities": [float(v) for v in probs], "reward": None})
        return torch.from_numpy(batch)

    def _update(self, reward: float) -> None:
        n = len(self.arms)
        k = len(self.pending["xi_over_p"][0])
        bonus = math.sqrt(math.log(n / self.delta) / (self.pending["n_actions"] * self.n_rounds))
        for i in range(n):
            yhat = reward * sum(self.pending["xi_over_p"][i]) / k
            self.log_w[i] += self.p_min / 2.0 * (yhat + self.pending["vhat"][i] * bonus)
        self.pending = None
