"""Typed, frozen settings, one dataclass per section of ``conf/lfr.yaml``, parsed once at the job edge.

    settings = load_settings(overrides=["score.k=20"])   # the yaml + $LFR_CONF + overrides, checked
    settings = with_values(settings, {"score.k": 5, "guards.allow_deletes": True})   # a job's flags
    run_score(spark, settings)

The library's entry points take these objects (the whole ``Settings`` or one section); a notebook,
a test or a bench builds them exactly as a job does, so all of them run the same configuration.

Why no default values here: ``conf/lfr.yaml`` is the single place defaults are written; a key
missing from the file is an error naming it, never a silent second default. Fields follow the
yaml's order, so adding a setting is: a line in the yaml, a field here (same section, same place).
Types are checked by OmegaConf's structured configs (``"64"`` -> 64, ``"x"`` for an int -> error).
"""
import dataclasses
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Iterable, List, Mapping, Optional, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lfr.config import ConfigError, load_config

T = TypeVar("T")


class _Section:
    def as_dict(self) -> dict:
        """A plain dict view, for library functions that still take a section mapping."""
        return asdict(self)


@dataclass(frozen=True)
class PathsSettings(_Section):
    data_dir: str
    work_dir: str
    warehouse: str
    model_dir: str
    reports_dir: str
    metastore_dir: Optional[str]
    delta_jars_dir: Optional[str]


METASTORE_SERVER = ("auto", "always", "never")


@dataclass(frozen=True)
class MetastoreSettings(_Section):
    """``lfr.spark.session``: which Derby serves the catalog of ``paths.metastore_dir`` (the network server
    of ``scripts/metastore.sh``, shared by every process, or embedded Derby, one process at a time)."""
    server: str
    host: str
    port: Optional[int]

    def __post_init__(self) -> None:
        if self.server not in METASTORE_SERVER:
            raise ConfigError(f"metastore.server must be one of {', '.join(METASTORE_SERVER)}, got {self.server!r}")
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigError(f"metastore.port must be a TCP port (1-65535) or null, got {self.port}")


@dataclass(frozen=True)
class SparkSettings(_Section):
    app_name: str
    master: Optional[str]
    conf: Dict[str, Any]


@dataclass(frozen=True)
class ValidationSettings(_Section):
    max_description_chars: int
    min_description_chars: int
    dedupe_editions: bool
    merge_sources: bool


@dataclass(frozen=True)
class GuardsSettings(_Section):
    """``lfr.spark.guards``: how much a run may shrink a table, and whether a source may be empty."""
    max_delete_fraction: float
    max_delete_rows: Optional[int]
    allow_deletes: bool
    allow_empty_sources: bool


@dataclass(frozen=True)
class TableSpec(_Section):
    name: str
    path: str


@dataclass(frozen=True)
class TablesSettings(_Section):
    database: str
    movies: TableSpec
    books: TableSpec
    movie_embeddings: TableSpec
    book_embeddings: TableSpec
    rejects: TableSpec
    movie_lexical: TableSpec
    book_lexical: TableSpec
    recommendations: TableSpec
    book_hubs: TableSpec
    recommendations_view: str


@dataclass(frozen=True)
class ModelSettings(_Section):
    kind: str
    encoder: str
    pooling: str
    max_length: int
    chunking: str
    chunk_overlap: int
    chunk_pooling: str
    include_title: bool
    genre_dim: int
    genre_epochs: int
    genre_bucket: int
    head: str
    output_dim: Optional[int]
    freeze_encoder: bool
    finetune_last_layers: int
    precision: str
    runtime: str
    quantize: str
    seed: int


@dataclass(frozen=True)
class RecipeSettings(_Section):
    """``train.recipes.<recipe>``: what a null ``train.epochs`` / ``lr`` / ``weight_decay`` means."""
    epochs: int
    lr: float
    weight_decay: float


@dataclass(frozen=True)
class TrainSettings(_Section):
    recipe: str
    epochs: Optional[int]
    lr: Optional[float]
    weight_decay: Optional[float]
    batch_size: int
    margin: float
    negatives_per_positive: int
    genre_positives_per_movie: int
    min_shared_genres: int
    val_fraction: float
    seed: int
    temperature: float
    hard_negatives: int
    hard_negative_skip: int
    patience: int
    pretrain_epochs: int
    span_pairs: int
    span_min_chars: int
    val_books: Optional[int]
    recipes: Dict[str, RecipeSettings]


@dataclass(frozen=True)
class XCrossSettings(_Section):
    """``lfr.model.xcross`` (model.kind xcross; keys documented in docs/XCROSS.md)."""
    encoder: Optional[str]
    pooling: str
    max_length: int
    include_title: bool
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    target_modules: Optional[List[str]]
    seed: int
    train_max_length: int
    adapter_steps: int
    adapter_epochs: Optional[float]
    adapter_batch_size: int
    adapter_lr: float
    adapter_val_fraction: float
    adapter_val_max: int
    adapter_eval_every: int
    adapter_patience: int
    integrator_steps: int
    integrator_batch_size: int
    integrator_lr: float
    temperature: float
    min_span_words: int
    cache_dir: Optional[str]
    adapter_max_items: Optional[int]


@dataclass(frozen=True)
class EmbedSettings(_Section):
    batch_size: int
    partitions: Optional[int]
    rows_per_partition: Optional[int]
    progress_seconds: float
    ship_model: str
    delete_missing: bool


@dataclass(frozen=True)
class LexicalSettings(_Section):
    weighting: str
    min_df: int
    max_df: float
    vocab_size: int
    min_token_length: int
    k1: float
    b: float


@dataclass(frozen=True)
class ScoreSettings(_Section):
    k: int
    method: str
    fusion: str
    alpha: float
    rrf_k: int
    missing_side: str
    movie_block_rows: int
    book_block_rows: int
    precision: str
    hubness: str
    hub_k: int
    hub_weight: float
    fused_hub_weight: float
    lexical_hubness: str
    exclude_pairs: Optional[str]
    movie_filter: Optional[str]
    book_filter: Optional[str]


@dataclass(frozen=True)
class EvalSettings(_Section):
    ks: List[int]
    confidence_fractions: List[float]
    distilbert_path: Optional[str]
    folds: int
    holdout_fraction: float
    negatives_per_positive: int
    seed: int
    adapters: bool
    xcross: bool
    protocols: List[str]


def parse_section(cls: type, name: str, data: Any):
    """``data`` (one section of the merged config) as a frozen ``cls``; unknown, missing or
    mistyped keys are a ``ConfigError`` naming the key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config section '{name}' must be a mapping, got {type(data).__name__}")
    known = [f.name for f in fields(cls)]
    unknown = [str(k) for k in data if k not in known]
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(f'{name}.{k}' for k in unknown)} "
                          f"(known in '{name}': {', '.join(known)})")
    missing = [k for k in known if k not in data]
    if missing:
        raise ConfigError(f"missing config key(s) {', '.join(f'{name}.{k}' for k in missing)}: "
                          "conf/lfr.yaml (the single place defaults are written) must set them")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), dict(data)))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config section '{name}': {exc}") from exc


@dataclass(frozen=True)
class Settings(_Section):
    profile: str
    paths: PathsSettings
    metastore: MetastoreSettings
    spark: SparkSettings
    catalogs: Dict[str, Any]
    validation: ValidationSettings
    guards: GuardsSettings
    tables: TablesSettings
    model: ModelSettings
    train: TrainSettings
    xcross: XCrossSettings
    embed: EmbedSettings
    lexical: LexicalSettings
    score: ScoreSettings
    eval: EvalSettings

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Settings":
        """Every section of a merged config (``lfr.config.load_config``), typed and checked once."""
        return parse_section(cls, "(top level)", cfg)


def load_settings(conf_file: Optional[str] = None, profile: Optional[str] = None, overrides: Iterable[str] = (),
                  environ: Optional[Mapping[str, str]] = None) -> Settings:
    """The typed settings of ``lfr.config.load_config`` (conf/lfr.yaml < profile < ``$LFR_CONF`` < ``overrides``).

    Example::

        settings = load_settings(overrides=["score.method=dense", "paths.data_dir=../shared/data"])
    """
    return Settings.from_config(load_config(conf_file, profile, overrides, environ))


def with_values(obj: T, values: Mapping[str, Any]) -> T:
    """A copy of a frozen settings object with the dotted keys of ``values`` replaced (``None`` values
    are skipped: an unset command-line flag keeps the configured value). Unknown keys are a ``ConfigError``.

    Example::

        with_values(settings, {"score.k": args.k, "guards.allow_deletes": args.allow_deletes or None})
    """
    changes: Dict[str, Dict[str, Any]] = {}
    direct: Dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        head, _, rest = key.partition(".")
        if head not in {f.name for f in fields(obj)}:
            raise ConfigError(f"unknown setting '{key}' for {type(obj).__name__}")
        if rest:
            changes.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, sub in changes.items():
        direct[head] = with_values(getattr(obj, head), sub)
    return dataclasses.replace(obj, **direct) if direct else obj
