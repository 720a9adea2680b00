"""Training of the LightFusionRec fusion head (pandas in, model out; jobs/train.py adds Spark).

    result = train(movies_df, books_df, positives_df_or_None, load_settings())   # TrainResult
    result.model.save(path, extra_manifest=result.manifest_extra())

``train.recipe``: ``paper`` (CosineEmbeddingLoss on link / genre-disjoint pairs, the paper's
AdamW 2e-5 x 2 epochs) or ``contrastive`` (InfoNCE with in-batch + mined hard negatives,
label-free pairs first, early stopping on validation MRR; ``lfr.train.contrastive``).
"""
from lfr.train.pairs import build_pairs, genre_agreement_positives, sample_negatives, split_by_movie
from lfr.train.result import TrainResult, data_fingerprint
from lfr.train.trainer import RECIPES, train, train_settings

__all__ = [
    "RECIPES", "TrainResult", "build_pairs", "data_fingerprint", "genre_agreement_positives",
    "sample_negatives", "split_by_movie", "train", "train_settings",
]
