"""Lexical (TF-IDF / BM25) features of the catalogs: Spark fit + incremental Delta tables, and the
driver-side model the evaluation uses (same tokenizer, vocabulary rules and weighting)."""
from lfr.lexical.model import LexicalModel, tokenize
from lfr.lexical.schema import LEXICAL_SCHEMA, LEXICAL_TABLES
from lfr.lexical.weighting import idf_weights, weight_counts
from lfr.settings import LexicalSettings  # the one lexical settings type (``lexical:`` in conf/lfr.yaml)

__all__ = ["LEXICAL_SCHEMA", "LEXICAL_TABLES", "LexicalModel", "LexicalSettings", "idf_weights", "tokenize",
           "weight_counts"]
