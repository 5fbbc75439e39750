"""The composer classifiers over indexed clip vectors: a k-NN vote, or a linear probe.

"knn": each clip's k nearest indexed clips vote for their composer (query.py).
It lets every indexed clip speak, so a composer with six times the clips of
another wins most close calls. "linear": a linear probe, a multinomial
logistic regression fitted on the same indexed vectors with each composer's
clips weighted to the same total (class-balanced, L2-regularised, as
scikit-learn's `LogisticRegression(C=1, class_weight="balanced")`), and a track's
probabilities are the softmax of its clips' mean log-probabilities. Fitted in a second on
thousands of clips (L-BFGS, float64: the same vectors always give the same
probe). `index build --classifier linear` chooses it (the default with piano
rolls); docs/RESULTS.md has the figures for both.

"fused": late fusion of the linear probe with a second class-balanced logistic
regression, on the track's standardised symbolic features (features/symbolic.py:
pitch-class, interval, polyphony and duration statistics, as a jSymbolic-style
classifier uses; McKay & Fujinaga 2006) fitted on the indexed tracks: a track's
probabilities are the softmax of the probe's mean clip log-probabilities plus the
symbolic model's log-probabilities (a product of experts). What the embedding and
the plain statistics of the notes each get right is summed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..choices import Classifier, values

CLASSIFIERS = values(Classifier, skip=("auto",))  # k-NN vote over clips; linear probe (LinearProbe)


@dataclass(frozen=True)
class LinearProbe:
    weights: np.ndarray  # (n_composers, d)
    bias: np.ndarray  # (n_composers,)

    def as_array(self) -> np.ndarray:
        """(n_composers, d + 1): the weights with the bias as the last column (linear_probe.npy)."""
        return np.concatenate([self.weights, self.bias[:, None]], axis=1).astype(np.float32)

    @classmethod
    def from_array(cls, a: np.ndarray) -> LinearProbe:
        return cls(np.asarray(a[:, :-1], np.float32), np.asarray(a[:, -1], np.float32))

    def log_proba(self, vectors: np.ndarray) -> np.ndarray:
        """(n, d) clip vectors -> (n, n_composers) log-probabilities."""
        z = vectors.astype(np.float64) @ self.weights.T.astype(np.float64) + self.bias
        z -= z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def track_proba(self, vectors: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
        """One track's composer probabilities from its clips: softmax of the mean clip log-probability
        (plus `prior`, (n_composers,) log-probabilities of another model of the same track: late fusion)."""
        mean = self.log_proba(vectors).mean(axis=0)
        if prior is not None:
            mean = mean + prior
        p = np.exp(mean - mean.max())
        return p / p.sum()


SYMBOLIC_C = 0.1  # the symbolic model's inverse L2 strength: 119 features fitted on a few hundred tracks
MAX_FIT = 200_000  # clips a probe is fitted on at most: a fixed random sample above (memory and time bound)


def fit_linear_probe(vectors: np.ndarray, labels: np.ndarray, n_classes: int, c: float = 1.0,
             max_iter: int = 200, max_fit: int = MAX_FIT) -> LinearProbe:
    """Class-balanced multinomial logistic regression: minimise sum_i w_i CE_i + ||W||^2 / (2c),
    w_i = n / (n_present_classes * n_{y_i}); classes absent from labels get a bias that never wins.
    Above max_fit clips, a fixed random sample of max_fit is fitted on."""
    import torch

    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) > max_fit:
        pick = np.sort(np.random.default_rng(0).choice(len(labels), max_fit, replace=False))
        vectors, labels = np.asarray(vectors)[pick], labels[pick]
    counts = np.bincount(labels, minlength=n_classes)
    present = counts > 0
    if present.sum() < 2:  # nothing to tell apart: the one composer present always wins
        return LinearProbe(np.zeros((n_classes, np.shape(vectors)[1]), np.float32),
                          np.where(present, 0.0, -1e4).astype(np.float32))
    x = torch.from_numpy(np.asarray(vectors, dtype=np.float64))
    y = torch.from_numpy(labels)
    sample_w = torch.from_numpy(len(labels) / (present.sum() * counts[labels].astype(np.float64)))
    w = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    mask = torch.from_numpy(np.where(present, 0.0, -1e9))
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-7, tolerance_change=1e-10,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logp = torch.log_softmax(x @ w.T + b + mask, dim=1)
        loss = -(sample_w * logp[torch.arange(len(y)), y]).sum() + (w * w).sum() / (2 * c)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    bias = b.detach().numpy() + mask.numpy()
    return LinearProbe(w.detach().numpy().astype(np.float32), np.maximum(bias, -1e4).astype(np.float32))


FUSION_WEIGHTS = np.linspace(0.0, 1.0, 11)  # the symbolic model's logits are scaled by one of these


def fit_tempered_probe(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_classes: int, c: float,
                       folds: int = 5) -> tuple[LinearProbe, float]:
    """fit_linear_probe on (n, d) x, its logits then scaled by the weight w in FUSION_WEIGHTS whose
    out-of-fold predictions score best (temperature scaling, Guo et al. 2017, with T = 1 / w >= 1):
    folds of whole groups (works: a work's movements share their statistics), the class-balanced mean
    log-likelihood of the true labels. Features that tell the composers apart only on the tracks
    they were fitted on get a weight near 0, so in a fusion they cannot outvote the other model.
    Fewer than two groups give no out-of-fold evidence: weight 0. Returns (probe, w)."""
    labels = np.asarray(labels, dtype=np.int64)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(g.max()) + 1 if len(g) else 0
    if n_groups < 2:  # nothing to fit: every composer equally likely
        return LinearProbe(np.zeros((n_classes, np.shape(x)[1]), np.float32), np.zeros(n_classes, np.float32)), 0.0
    full = fit_linear_probe(x, labels, n_classes, c=c)
    fold = g % min(folds, n_groups)
    logits = np.zeros((len(labels), n_classes))
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        p = fit_linear_probe(x[train], labels[train], n_classes, c=c)
        logits[test] = x[test].astype(np.float64) @ p.weights.T.astype(np.float64) + p.bias
    present = np.unique(labels)

    def balanced_loglik(w: float) -> float:
        z = w * logits
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        true = logp[np.arange(len(labels)), labels]
        return float(np.mean([true[labels == k].mean() for k in present]))

    w = float(max(FUSION_WEIGHTS, key=balanced_loglik))  # the first best: the smallest weight on ties
    return LinearProbe((full.weights * w).astype(np.float32), (full.bias * w).astype(np.float32)), w
