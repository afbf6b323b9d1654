"""The linear classifier as a Beam ``ModelHandler``: RunInference over Arrow record batches of
rows (one batch is one inference call: a row group is already a batch), as Beam's
``sklearn_inference`` handlers do for scikit-learn models."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from threadpoolctl import threadpool_limits

from orca_beam.classify.linear import LinearClassifier
from orca_beam.core import s3
from orca_beam.store.reader import embedding_matrix


class LinearClassifierHandler(ModelHandler[pa.RecordBatch, PredictionResult, LinearClassifier]):
    """Loads classifier.json from ``path`` (local, gs://, s3://) once per worker; an example is a
    record batch with an ``embedding`` column, its inference the scores [rows, classes] float32
    (:meth:`LinearClassifier.scores`)."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def load_model(self) -> LinearClassifier:
        """The classifier (read once per worker). The worker's BLAS is held to one thread:
        the products here are small (a row group by D by a few classes), and waking a second
        thread for each costs more than it gives (the fit measured it at 16x)."""
        s3.install()
        threadpool_limits(1, user_api="blas")
        return LinearClassifier.load(self.path)

    def run_inference(self, batch: Sequence[pa.RecordBatch], model: LinearClassifier,
                      inference_args: dict | None = None) -> Iterable[PredictionResult]:
        """One PredictionResult per record batch: (the batch, its scores [rows, C])."""
        for records in batch:
            yield PredictionResult(records, model.scores(embedding_matrix(records))
                                   .astype(np.float32))

    def get_num_bytes(self, batch: Sequence[pa.RecordBatch]) -> int:
        """The bytes of the batches (Beam's inference metrics)."""
        return sum(records.nbytes for records in batch)

    def batch_elements_kwargs(self) -> dict:
        """One record batch per call."""
        return {"max_batch_size": 1}
