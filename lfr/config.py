"""Layered configuration: YAML file < profile < environment < command line, merged by OmegaConf.

Why layered: the same jobs run on a laptop (`local` profile, bundled sample
data) and with `spark-submit` on a cluster (`cluster` profile, object-store
paths). Every value a job uses lives in `conf/lfr.yaml` (the single place
defaults are written); nothing is hard-coded in the jobs, and any value can be
overridden without editing the file.

Override syntax (same on the CLI and in the ``LFR_CONF`` environment variable):

* ``--conf embed.batch_size=64``      -> a dotted path into the LFR config
* ``--conf spark.sql.shuffle.partitions=4`` -> keys starting with ``spark.``
  are Spark settings and go to ``spark.conf`` verbatim (like spark-submit).

Values are parsed as YAML scalars (``64`` -> int, ``true`` -> bool). An override of
a key the file does not have is an error naming the key. ``${a.b}`` refers to the
value at ``a.b`` after all layers are merged (OmegaConf interpolation), and relative
paths under ``paths`` and table locations are resolved against the project root
(the current directory when lfr runs from an installed wheel, whose packaged
``lfr/lfr.yaml`` is then the default file) so jobs behave the same from any cwd.

``load_config`` returns the merged, resolved tree as a ``Config`` (a plain nested dict);
``lfr.settings.Settings.from_config`` turns it into typed, frozen per-section settings.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lfr.errors import UsageError

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
DEFAULT_CONF_FILE = PROJECT_ROOT / "conf" / "lfr.yaml"
PACKAGED_CONF_FILE = PACKAGE_DIR / "lfr.yaml"   # the same file, packaged into the wheel
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^dbfs:")
_FILE_URI = "file://"
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(UsageError):
    """A configuration file or override is malformed or names an unknown key."""


class Config(dict):
    """The merged configuration as a plain nested dict (``lfr.settings.Settings`` is its typed view)."""


def is_uri(value: str | os.PathLike) -> bool:
    """True for storage only Spark/Hadoop can reach (s3a://, hdfs://, abfss://, dbfs:, ...).

    ``file://`` is a local path, not a URI, everywhere in lfr: ``resolve_path`` turns it into one."""
    text = str(value)
    return bool(_URI.match(text)) and not text.startswith(_FILE_URI)


def default_conf_file() -> tuple[Path, Path]:
    """``(default config file, root relative paths resolve against)``: the checkout's conf/lfr.yaml
    and the project root, or -- lfr installed from a wheel -- the packaged copy and the current directory."""
    if DEFAULT_CONF_FILE.is_file():
        return DEFAULT_CONF_FILE, PROJECT_ROOT
    return PACKAGED_CONF_FILE, Path.cwd()


def resolve_path(value: str, root: str | os.PathLike | None = None) -> str:
    """Absolute local path for a relative one (against ``root``, default: see ``default_conf_file``)
    or a ``file://`` URI; remote URIs unchanged."""
    if is_uri(value):
        return value
    if value.startswith(_FILE_URI):
        value = value[len(_FILE_URI):]
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (Path(root or default_conf_file()[1]) / p).resolve())


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{item}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # Paths and ids are strings even when they look like numbers/dates.
    if isinstance(value, (dict, list)) and not raw.strip().startswith(("[", "{")):
        value = raw
    # YAML 1.1 reads 1e-3 (no dot) as a string: a number written in exponent form is a float.
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(raw.strip()):
        value = float(raw)
    # YAML 1.1 reads on/off/yes/no as booleans: `model.chunking=off` must stay the word (only true/false are bools).
    if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
        value = raw.strip()
    return key, value


def _spark_conf_key(key: str) -> str | None:
    """The Spark setting an override names (``spark.sql.x`` / ``spark.conf.spark.sql.x``), else None."""
    if key.startswith("spark.conf."):
        return key[len("spark.conf."):]
    if key.startswith("spark.") and key not in ("spark.master", "spark.app_name"):
        return key
    return None


def apply_override(cfg: DictConfig, key: str, value: Any) -> None:
    """Set one override. ``spark.*`` keys go to the Spark conf map verbatim; other keys must exist."""
    spark_key = _spark_conf_key(key)
    if spark_key is not None:
        if not isinstance(cfg.get("spark"), DictConfig):
            cfg["spark"] = {}
        if not isinstance(cfg.spark.get("conf"), DictConfig):
            cfg.spark["conf"] = {}
        cfg.spark.conf[spark_key] = value
        return
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts[:-1]):
        if node.get(part) is None:
            node[part] = {}
        if not isinstance(node[part], DictConfig):
            raise ConfigError(f"override '{key}': '{'.'.join(parts[:i + 1])}' is not a section")
        node = node[part]
    if parts[-1] not in node and not _open_section(parts[:-1]):
        known = ", ".join(sorted(str(k) for k in node)) or "(none)"
        raise ConfigError(f"override '{key}': unknown key '{parts[-1]}' (known here: {known})")
    node[parts[-1]] = value


def _open_section(parents: list[str]) -> bool:
    """Sections whose keys are free-form (maps of user-chosen names)."""
    return bool(parents) and parents[-1] in {"conf", "extra", "filters"}


def env_overrides(environ: Mapping[str, str] | None = None) -> list[str]:
    """``LFR_CONF="embed.batch_size=64 score.k=20"`` (shell-quoted list)."""
    env = os.environ if environ is None else environ
    raw = env.get("LFR_CONF", "").strip()
    return shlex.split(raw) if raw else []


def _packaged_conf_text() -> str | None:
    """The wheel's lfr.yaml when ``lfr`` is imported from the zip itself (spark-submit --py-files x.whl):
    no file on disk then, so it is read through the package's loader."""
    from importlib import resources

    try:
        return resources.files("lfr").joinpath("lfr.yaml").read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError):
        return None


def _read_layers(path: Path, profile: str | None, env: Mapping[str, str]) -> DictConfig:
    """The file merged with the chosen profile (``profile`` records which)."""
    text = _packaged_conf_text() if path == PACKAGED_CONF_FILE and not path.is_file() else None
    if text is None and not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = OmegaConf.create(yaml.safe_load(text if text is not None else path.read_text(encoding="utf-8")) or {})
    except (yaml.YAMLError, OmegaConfBaseException) as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    profiles = raw.pop("profiles", None) or {}
    chosen = profile or env.get("LFR_PROFILE") or raw.get("profile", "local")
    if chosen not in profiles:
        raise ConfigError(f"unknown profile '{chosen}' in {path} (have: {', '.join(sorted(profiles))})")
    cfg = OmegaConf.merge(raw, profiles[chosen] or {})
    cfg["profile"] = chosen
    return cfg


def load_config(
    conf_file: str | os.PathLike | None = None,
    profile: str | None = None,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge the YAML file, the chosen profile, ``LFR_CONF`` and CLI overrides; interpolate; resolve paths."""
    env = os.environ if environ is None else environ
    default_file, root = default_conf_file()
    path = Path(conf_file or env.get("LFR_CONF_FILE") or default_file)
    cfg = _read_layers(path, profile, env)
    try:
        for item in [*env_overrides(env), *overrides]:
            apply_override(cfg, *_parse_override(item))
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:   # e.g. ${a.b} naming a key that does not exist
        raise ConfigError(f"config: {exc}") from exc
    result = Config(resolved)
    _resolve_paths(result, root)
    return result


_PATH_KEYS = ("path", "pairs", "exclude_pairs")
_PATH_SUFFIXES = ("_dir", "_file", "_path")


def _resolve_paths(node: dict, root: Path, all_paths: bool = False) -> None:
    """Make path-valued settings absolute, so every consumer sees the same path.

    Path-valued: everything under ``paths``, and keys named path/pairs or ending
    in _dir/_file/_path elsewhere."""
    for key, value in node.items():
        if isinstance(value, dict):
            _resolve_paths(value, root, all_paths=key == "paths")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _resolve_paths(item, root)
        elif isinstance(value, str) and value not in ("auto", "default", "") and (
            all_paths or key in _PATH_KEYS or key.endswith(_PATH_SUFFIXES)
        ):
            node[key] = resolve_path(value, root)


def add_config_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The config flags every job shares."""
    parser.add_argument("--config", dest="conf_file", default=None,
                        help="YAML config file (default conf/lfr.yaml or $LFR_CONF_FILE)")
    parser.add_argument("--profile", default=None,
                        help="config profile: local | cluster (default $LFR_PROFILE or the file's 'profile')")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting; repeatable. 'spark.*' keys are Spark settings")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.conf_file, args.profile, args.conf)
