"""Training of the LightFusionRec fusion head (pandas in, model out; jobs/train.py adds Spark).

    result = train(movies_df, books_df, positives_df_or_None, cfg)   # TrainResult
    result.model.save(path, extra_manifest=result.manifest_extra())
    model = train_model(movies_df, books_df, positives_df_or_None, cfg)  # just the model
"""
from lfr.train.pairs import build_pairs, genre_agreement_positives, sample_negatives, split_by_movie
from lfr.train.trainer import TRAIN_DEFAULTS, TrainResult, data_fingerprint, train, train_model, train_settings

__all__ = [
    "TRAIN_DEFAULTS", "TrainResult", "build_pairs", "data_fingerprint", "genre_agreement_positives",
    "sample_negatives", "split_by_movie", "train", "train_model", "train_settings",
]
