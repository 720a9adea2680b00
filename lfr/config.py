"""Layered configuration: YAML file < profile < environment < command line.

Why layered: the same jobs run on a laptop (`local` profile, bundled sample
data) and with `spark-submit` on a cluster (`cluster` profile, object-store
paths). Every value a job uses lives in `conf/lfr.yaml`; nothing is hard-coded
in the jobs, and any value can be overridden without editing the file.

Override syntax (same on the CLI and in the ``LFR_CONF`` environment variable):

* ``--conf model.batch_size=64``      -> a dotted path into the LFR config
* ``--conf spark.sql.shuffle.partitions=4`` -> keys starting with ``spark.``
  are Spark settings and go to ``spark.conf`` verbatim (like spark-submit).

Values are parsed as YAML scalars (``64`` -> int, ``true`` -> bool).
``${a.b}`` inside a string is replaced by the value at ``a.b`` (after all
layers are merged), and relative paths under ``paths`` and table locations are
resolved against the project root so jobs behave the same from any cwd.
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import shlex
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONF_FILE = PROJECT_ROOT / "conf" / "lfr.yaml"
_INTERP = re.compile(r"\$\{([A-Za-z0-9_.]+)\}")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^dbfs:")
_FILE_URI = "file://"


class ConfigError(ValueError):
    """A configuration file or override is malformed or names an unknown key."""


class Config(dict):
    """A nested dict with dotted-path access: ``cfg.get_path('score.k')``."""

    def get_path(self, dotted: str, default: Any = ...) -> Any:
        node: Any = self
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                if default is ...:
                    raise ConfigError(f"missing config key '{dotted}' (no '{part}')")
                return default
            node = node[part]
        return node

    def path(self, dotted: str) -> str:
        """A filesystem path or URI value, resolved against the project root."""
        return resolve_path(str(self.get_path(dotted)))


def is_uri(value: str | os.PathLike) -> bool:
    """True for storage only Spark/Hadoop can reach (s3a://, hdfs://, abfss://, dbfs:, ...).

    ``file://`` is a local path, not a URI, everywhere in lfr: ``resolve_path`` turns it into one."""
    text = str(value)
    return bool(_URI.match(text)) and not text.startswith(_FILE_URI)


def resolve_path(value: str) -> str:
    """Absolute local path for a relative one or a ``file://`` URI; remote URIs unchanged."""
    if is_uri(value):
        return value
    if value.startswith(_FILE_URI):
        value = value[len(_FILE_URI):]
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (PROJECT_ROOT / p).resolve())


def _deep_merge(base: dict, extra: Mapping) -> dict:
    for key, val in extra.items():
        if isinstance(val, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], val)
        else:
            base[key] = copy.deepcopy(val)
    return base


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
    return key, value


def apply_override(cfg: dict, key: str, value: Any) -> None:
    """Set one override. ``spark.*`` keys go to the Spark conf map verbatim."""
    if key.startswith("spark.") and not key.startswith(("spark.master", "spark.app_name", "spark.conf.")):
        cfg.setdefault("spark", {}).setdefault("conf", {})[key] = value
        return
    if key.startswith("spark.conf."):
        cfg.setdefault("spark", {}).setdefault("conf", {})[key[len("spark.conf."):]] = value
        return
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override '{key}': '{'.'.join(parts[:i + 1])}' is not a section")
        node = nxt
    if parts[-1] not in node and not _open_section(parts[:-1]):
        known = ", ".join(sorted(node)) or "(none)"
        raise ConfigError(f"override '{key}': unknown key '{parts[-1]}' (known here: {known})")
    node[parts[-1]] = value


def _open_section(parents: list[str]) -> bool:
    """Sections whose keys are free-form (maps of user-chosen names)."""
    return bool(parents) and parents[-1] in {"conf", "extra", "filters"}


def _interpolate(cfg: Config) -> None:
    def lookup(match: re.Match) -> str:
        return str(cfg.get_path(match.group(1)))

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            for _ in range(10):  # nested references resolve in a few passes
                new = _INTERP.sub(lookup, node)
                if new == node:
                    break
                node = new
            return node
        return node

    resolved = walk(dict(cfg))
    cfg.clear()
    cfg.update(resolved)


def env_overrides(environ: Mapping[str, str] | None = None) -> list[str]:
    """``LFR_CONF="model.batch_size=64 score.k=20"`` (shell-quoted list)."""
    env = os.environ if environ is None else environ
    raw = env.get("LFR_CONF", "").strip()
    return shlex.split(raw) if raw else []


def load_config(
    conf_file: str | os.PathLike | None = None,
    profile: str | None = None,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge the YAML file, the chosen profile, ``LFR_CONF`` and CLI overrides."""
    env = os.environ if environ is None else environ
    path = Path(conf_file or env.get("LFR_CONF_FILE") or DEFAULT_CONF_FILE)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    profiles = raw.pop("profiles", {}) or {}
    chosen = profile or env.get("LFR_PROFILE") or raw.get("profile", "local")
    if chosen not in profiles:
        raise ConfigError(f"unknown profile '{chosen}' in {path} (have: {', '.join(sorted(profiles))})")
    cfg: dict = _deep_merge(copy.deepcopy(raw), profiles[chosen] or {})
    cfg["profile"] = chosen
    for item in [*env_overrides(env), *overrides]:
        apply_override(cfg, *_parse_override(item))
    result = Config(cfg)
    _interpolate(result)
    _resolve_paths(result)
    return result


_PATH_KEYS = ("path", "pairs", "exclude_pairs")
_PATH_SUFFIXES = ("_dir", "_file", "_path")


def _resolve_paths(node: dict, all_paths: bool = False) -> None:
    """Make path-valued settings absolute, so every consumer sees the same path.

    Path-valued: everything under ``paths``, and keys named path/pairs or ending
    in _dir/_file/_path elsewhere."""
    for key, value in node.items():
        if isinstance(value, dict):
            _resolve_paths(value, all_paths=key == "paths")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _resolve_paths(item)
        elif isinstance(value, str) and value not in ("auto", "default", "") and (
            all_paths or key in _PATH_KEYS or key.endswith(_PATH_SUFFIXES)
        ):
            node[key] = resolve_path(value)


def add_config_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The config flags every job shares."""
    parser.add_argument("--config", dest="conf_file", default=None, help="YAML config file (default conf/lfr.yaml or $LFR_CONF_FILE)")
    parser.add_argument("--profile", default=None, help="config profile: local | cluster (default $LFR_PROFILE or the file's 'profile')")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting; repeatable. 'spark.*' keys are Spark settings")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.conf_file, args.profile, args.conf)
