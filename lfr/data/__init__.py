"""Catalog ingestion: readers, validation, deduplication, pair files (docs/CONTRACTS.md "Catalogs")."""
from lfr.data.catalog import content_hash_col, load_catalog
from lfr.data.driver import DriverInputs, collect_driver_inputs
from lfr.data.pairs import read_pairs
from lfr.data.readers import READERS, CatalogReadError, read_source
from lfr.data.schema import CATALOG_SCHEMA, REJECTS_SCHEMA

__all__ = [
    "CATALOG_SCHEMA", "REJECTS_SCHEMA", "READERS", "CatalogReadError", "DriverInputs", "collect_driver_inputs",
    "content_hash_col", "load_catalog", "read_pairs", "read_source",
]
