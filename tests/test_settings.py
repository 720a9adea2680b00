"""Settings are read one way: conf/lfr.yaml -> ``lfr.settings.Settings`` -> the library.

Why: the library once carried its own default tables (``MODEL_DEFAULTS``, ``TRAIN_DEFAULTS``, ...),
five of which disagreed with the yaml, so a notebook calling the library got another model and
another scorer than ``make demo``. These tests pin the one path: a job's settings (no flags) equal
``load_settings()``, flags and ``--conf`` land in the same typed object, and no public library
function writes a setting's value as a parameter default.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
from pathlib import Path

import pytest

from lfr.config import ConfigError
from lfr.settings import load_settings, with_values

ROOT = Path(__file__).resolve().parent.parent
JOBS = ("train", "embed_books", "embed_movies", "embed_lexical", "score_all", "evaluate", "pipeline")


def _add_args(name: str):
    """A job's own flags (the embed jobs share jobkit's)."""
    if name in ("embed_books", "embed_movies"):
        import jobkit

        return jobkit.add_embed_args
    spec = importlib.util.spec_from_file_location(f"_job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.add_args


@pytest.mark.parametrize("job", JOBS)
def test_a_job_without_flags_runs_the_library_defaults(job, monkeypatch):
    """The settings ``run_job`` hands a job (no flags) are exactly what a notebook gets from ``load_settings()``."""
    monkeypatch.syspath_prepend(str(ROOT / "jobs"))
    for var in ("LFR_CONF", "LFR_PROFILE", "LFR_CONF_FILE"):
        monkeypatch.delenv(var, raising=False)
    import jobkit

    args = jobkit.parse_args(job, _add_args(job), [])
    assert jobkit.job_settings(args) == load_settings()
    with_conf = jobkit.parse_args(job, _add_args(job), ["--conf", "score.k=7", "--conf", "model.chunking=off"])
    assert jobkit.job_settings(with_conf) == load_settings(overrides=["score.k=7", "model.chunking=off"])


def test_conf_overrides_and_with_values_build_the_same_settings():
    by_conf = load_settings(overrides=["score.k=5", "model.chunking=off", "train.recipes.paper.lr=1e-3"],
                            environ={})
    by_value = with_values(load_settings(environ={}), {"score.k": 5, "model.chunking": "off"})
    paper = with_values(by_value.train.recipes["paper"], {"lr": 1e-3})
    by_value = with_values(by_value, {"train.recipes": {**by_value.train.recipes, "paper": paper}})
    assert by_conf == by_value
    assert with_values(by_value, {"score.k": None}) is by_value     # an unset flag keeps the configured value
    with pytest.raises(ConfigError, match="unknown setting 'kk'"):
        with_values(by_value, {"score.kk": 1})


def _setting_names() -> set[str]:
    names: set[str] = set()
    s = load_settings(environ={})
    for f in dataclasses.fields(s):
        section = getattr(s, f.name)
        if dataclasses.is_dataclass(section):
            names |= {g.name for g in dataclasses.fields(section)}
    return names


def _public_defaults() -> list[str]:
    """``file:line function(param=literal)`` for public module-level lfr functions whose parameter is
    named like a setting and has a literal, non-None default: a second default beside conf/lfr.yaml.
    (Methods of model objects keep a ``batch_size`` for interactive use; the jobs pass the setting.)"""
    names, found = _setting_names(), []
    for path in sorted((ROOT / "lfr").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
                continue
            args = node.args.args[len(node.args.args) - len(node.args.defaults):] + node.args.kwonlyargs
            defaults = list(node.args.defaults) + list(node.args.kw_defaults)
            for arg, default in zip(args, defaults):
                if (arg.arg in names and isinstance(default, ast.Constant) and default.value is not None
                        and not isinstance(default.value, bool)):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}({arg.arg}={default.value!r})")
    return found


def test_no_module_keeps_a_default_table():
    tables = []
    for path in sorted((ROOT / "lfr").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = [t.id for t in getattr(node, "targets", [getattr(node, "target", None)]) if
                       isinstance(t, ast.Name)]
            tables += [f"{path.relative_to(ROOT)}:{node.lineno} {t}" for t in targets if t.endswith("_DEFAULTS")]
    assert tables == []


def test_public_library_functions_take_no_setting_defaults():
    assert _public_defaults() == []


def test_metastore_section_is_typed_and_checked():
    """conf/lfr.yaml's metastore block (lfr/spark/session.py, scripts/metastore.sh): the embedded fallback by
    default (auto: the network server only while make metastore-up runs one), bad values named."""
    ms = load_settings(environ={}).metastore
    assert (ms.server, ms.host, ms.port) == ("auto", "127.0.0.1", None)
    assert load_settings(overrides=["metastore.port=1527"], environ={}).metastore.port == 1527
    for bad, match in (("metastore.server=yes", "metastore.server must be one of auto, always, never"),
                       ("metastore.port=70000", "metastore.port must be a TCP port"),
                       ("metastore.port=x", "metastore.port")):
        with pytest.raises(ConfigError, match=match):
            load_settings(overrides=[bad], environ={})
