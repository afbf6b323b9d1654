"""Score functions between query vectors and rows: higher is always better.

``cosine``: the cosine similarity (in [-1, 1]); ``dot``: the inner product; ``euclidean``: minus
the Euclidean distance (so that, as for the others, the best hit has the largest score).
"""

from __future__ import annotations

import numpy as np

SCORES = ("cosine", "dot", "euclidean")


def normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows of ``vectors`` [N, D] divided by their L2 norm (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def score_matrix(queries: np.ndarray, rows: np.ndarray, score: str) -> np.ndarray:
    """Scores [Q, N] (float32) of query vectors [Q, D] against row vectors [N, D], one batched
    matrix product (euclidean: from ``|q|^2 - 2 q.r + |r|^2``, clipped at 0 before the root)."""
    queries = np.asarray(queries, np.float32)
    rows = np.asarray(rows, np.float32)
    if score == "dot":
        return queries @ rows.T
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}: choose from {', '.join(SCORES)}")
    # row norms from one pass over the rows (no normalised copy of a batch)
    row_squares = np.einsum("ij,ij->i", rows, rows)
    if score == "cosine":
        norms = np.sqrt(row_squares)
        return (normalised(queries) @ rows.T) / np.where(norms > 0, norms, 1.0)[None, :]
    else:  # euclidean
        squared = (np.einsum("ij,ij->i", queries, queries)[:, None] - 2.0 * (queries @ rows.T)
                   + row_squares[None, :])
        return -np.sqrt(np.maximum(squared, 0.0))


def pooled_scores(queries: list[np.ndarray], rows: np.ndarray, score: str, pool: str
                  ) -> np.ndarray:
    """Scores [len(queries), N] of queries that may hold several windows each (a clip longer
    than one window: an array [W, D]) against rows [N, D]. ``pool``: ``max`` (the best score
    over the query's windows) or ``mean`` (the score of the mean of its windows)."""
    if pool == "mean":
        return score_matrix(np.stack([q.mean(axis=0) for q in queries]), rows, score)
    if pool != "max":
        raise ValueError(f"unknown pooling {pool!r}: choose max or mean")
    stacked = np.concatenate(queries)
    scores = score_matrix(stacked, rows, score)
    bounds = np.cumsum([0, *[len(q) for q in queries]])
    return np.stack([scores[a:b].max(axis=0) for a, b in zip(bounds, bounds[1:], strict=False)])


def combined(scores: np.ndarray, how: str) -> np.ndarray:
    """One list over every query: [N] the ``max`` or the ``mean`` of ``scores`` [Q, N]."""
    if how == "max":
        return scores.max(axis=0)
    if how == "mean":
        return scores.mean(axis=0)
    raise ValueError(f"unknown combination {how!r}: choose max or mean")
