"""The linear classifier: one logistic output per class over an embedding (multi-label), its
fit, and its file ``classifier.json``.

A window's score for class ``c`` is ``sigmoid(z @ weights[c] + bias[c])`` with
``z = (x' - center) / scale`` and ``x' = x / |x|`` when ``l2_normalize`` (else ``x``): a
probability in [0, 1], compared with ``thresholds[c]``. ``classifier.json`` holds all of it as
plain lists, so numpy alone scores with it (README, "Classify").

The fit minimises, per class independently, the weighted mean binary cross-entropy over the
windows plus ``l2 / 2 * |weights[c]|^2`` (the bias is not penalised), with L-BFGS; a weight of
0 leaves a window out of that class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from apache_beam.io.filesystems import FileSystems
from threadpoolctl import threadpool_limits

#: classifier.json's format.
CLASSIFIER_FORMAT = 1
NORMALIZE = ("none", "l2", "standard", "l2+standard")
#: Below this many multiply-adds a step (windows x dimensions x classes) the fit uses one thread.
SMALL_PRODUCT = 20_000_000


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow for large negative ``z`` (scipy's expit: one
    pass, where exp(-logaddexp(0, -z)) takes two)."""
    from scipy.special import expit

    return expit(z)


@dataclass
class LinearClassifier:
    """Weights [C, D] and bias [C] over inputs normalised as the module doc says; ``classes``
    names the C outputs; ``thresholds`` [C] are score (probability) thresholds; ``meta`` is
    everything else classifier.json holds (embedding version, labels, settings, metrics)."""

    classes: list[str]
    weights: np.ndarray
    bias: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    l2_normalize: bool
    thresholds: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """The embedding dimension D it takes."""
        return int(self.weights.shape[1])

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """Embeddings [N, D] -> the normalised inputs [N, D] (float64)."""
        x = np.asarray(x, np.float64)
        if self.l2_normalize:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return (x - self.center) / self.scale

    @cached_property
    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """The centring and scaling folded into the layer: (weights' [D, C], bias' [C]) with
        ``z @ weights.T + bias == x' @ weights' + bias'`` (``x'``: the input after the optional
        L2 step), so scoring makes no normalised copy of the inputs. Computed once: a
        classifier's weights do not change once made."""
        folded = (self.weights / self.scale).T
        return folded, self.bias - self.center @ folded

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Embeddings [N, D] -> logits [N, C] (float64)."""
        x = np.asarray(x, np.float64)
        if self.l2_normalize:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        weights, bias = self.folded
        return x @ weights + bias

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Embeddings [N, D] -> scores [N, C] in [0, 1]."""
        return sigmoid(self.logits(x))

    def to_dict(self) -> dict:
        """What classifier.json holds (floats as Python floats: exact round trip)."""
        return {
            "format": CLASSIFIER_FORMAT,
            "kind": "linear, one logistic output per class",
            "score": "sigmoid(((x / |x| if l2_normalize else x) - center) / scale @ weights[c] "
                     "+ bias[c])",
            "classes": list(self.classes),
            "thresholds": {c: float(t) for c, t in zip(self.classes, self.thresholds,
                                                        strict=True)},
            "l2_normalize": bool(self.l2_normalize),
            **self.meta,
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "bias": self.bias.tolist(),
            "weights": self.weights.tolist(),
        }

    @staticmethod
    def from_dict(doc: dict) -> LinearClassifier:
        """The classifier of a classifier.json document."""
        classes = list(doc["classes"])
        own = {"format", "kind", "score", "classes", "thresholds", "l2_normalize", "center",
               "scale", "bias", "weights"}
        return LinearClassifier(
            classes, np.asarray(doc["weights"], np.float64).reshape(len(classes), -1),
            np.asarray(doc["bias"], np.float64), np.asarray(doc["center"], np.float64),
            np.asarray(doc["scale"], np.float64), bool(doc["l2_normalize"]),
            np.array([doc["thresholds"][c] for c in classes], np.float64),
            {k: v for k, v in doc.items() if k not in own})

    def save(self, path: str) -> None:
        """Writes classifier.json (local, gs:// or s3://)."""
        with FileSystems.create(path) as handle:
            handle.write(json.dumps(self.to_dict()).encode())

    @staticmethod
    def load(path: str) -> LinearClassifier:
        """Reads classifier.json (local, gs:// or s3://)."""
        with FileSystems.open(path) as handle:
            return LinearClassifier.from_dict(json.loads(handle.read().decode()))


def normalization(x: np.ndarray, kind: str) -> tuple[bool, np.ndarray, np.ndarray]:
    """(l2_normalize, center [D], scale [D]) for ``kind`` (one of NORMALIZE), estimated from the
    training inputs ``x`` [N, D] (standard: their mean and standard deviation after the L2 step;
    a constant dimension keeps scale 1)."""
    if kind not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, not {kind!r}")
    x = np.asarray(x, np.float64)
    l2 = kind.startswith("l2")
    if l2:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if kind.endswith("standard"):
        center, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale < 1e-12] = 1.0
    else:
        center, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
    return l2, center, scale


def fit_logistic(z: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float,
                 max_iter: int = 1000, gtol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Weights [C, D] and bias [C] minimising, per class ``c``, the mean over windows of
    ``w[:, c] * BCE(z @ weights[c] + bias[c], y[:, c])`` plus ``l2 / 2 * |weights[c]|^2``.
    ``z``: normalised inputs [N, D]; ``y``: 0/1 targets [N, C]; ``w``: window weights [N, C]
    (>= 0). All classes are fitted at once (the objective is their sum; they do not share
    parameters). With fewer windows than dimensions the fit runs in the span of the windows
    (thin SVD ``z = U S V^T``, inputs ``z V``): the penalised optimum lies in that span, so the
    weights are the same, found in fewer and cheaper steps."""
    from scipy.optimize import minimize

    z = np.asarray(z, np.float64)
    y = np.asarray(y, np.float64)
    w = np.asarray(w, np.float64)
    basis = None
    if z.shape[0] < z.shape[1]:
        _, singular, vt = np.linalg.svd(z, full_matrices=False)
        basis = vt[singular > singular[0] * 1e-10]
        z = z @ basis.T
    n, d = z.shape
    c = y.shape[1]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weights, bias = theta[:c * d].reshape(c, d), theta[c * d:]
        logits = z @ weights.T + bias
        # BCE from logits: log(1 + e^l) - y l
        loss = w * (np.logaddexp(0.0, logits) - y * logits)
        residual = w * (sigmoid(logits) - y) / n
        value = loss.sum() / n + 0.5 * l2 * float(np.sum(weights * weights))
        grad_w = residual.T @ z + l2 * weights
        return value, np.concatenate([grad_w.ravel(), residual.sum(axis=0)])

    # Small products are 10-20x faster on one BLAS thread (measured: 168 x 168 x 37, 0.25 ms
    # a step against 4 ms with OpenBLAS waking 2 threads); large ones use every core.
    with threadpool_limits(1 if n * d * c < SMALL_PRODUCT else None, user_api="blas"):
        result = minimize(objective, np.zeros(c * d + c), jac=True, method="L-BFGS-B",
                          options={"maxiter": max_iter, "gtol": gtol, "ftol": 1e-12})
    weights, bias = result.x[:c * d].reshape(c, d), result.x[c * d:]
    return (weights if basis is None else weights @ basis), bias
