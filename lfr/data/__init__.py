"""Catalog ingestion: readers, validation, deduplication, pair files (docs/CONTRACTS.md "Catalogs").

Names are imported on first use (``lfr.lazy``): executors running the readers' UDFs import
``lfr.data.readers`` without the driver's modules (settings, Delta).
"""
from lfr.lazy import lazy_exports

_EXPORTS = {
    "content_hash_col": "catalog", "load_catalog": "catalog",
    "DriverInputs": "driver", "collect_driver_inputs": "driver",
    "read_pairs": "pairs", "READERS": "readers", "CatalogReadError": "readers", "read_source": "readers",
    "CATALOG_SCHEMA": "schema", "REJECTS_SCHEMA": "schema",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
