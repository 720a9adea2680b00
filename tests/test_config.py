from pathlib import Path

import pytest

from lfr.config import PROJECT_ROOT, ConfigError, load_config


def test_defaults_come_from_the_local_profile():
    cfg = load_config(environ={})
    assert cfg["profile"] == "local"
    assert cfg["spark"]["master"] == "local[*]"
    assert cfg["spark"]["conf"]["spark.sql.shuffle.partitions"] == 8
    # interpolation and path resolution against the project root
    assert cfg["paths"]["warehouse"] == str(PROJECT_ROOT / "work" / "warehouse")
    assert cfg["tables"]["recommendations"]["path"] == str(PROJECT_ROOT / "work" / "warehouse" / "recommendations")


def test_cli_overrides_beat_env_which_beat_the_file():
    env = {"LFR_CONF": "score.k=20 embed.batch_size=8 paths.work_dir=/tmp/lfr-x"}
    cfg = load_config(overrides=["score.k=50", "spark.sql.shuffle.partitions=3"], environ=env)
    assert cfg["score"]["k"] == 50                      # CLI wins over env
    assert cfg["embed"]["batch_size"] == 8              # env wins over file
    assert cfg["spark"]["conf"]["spark.sql.shuffle.partitions"] == 3   # spark.* goes to Spark conf
    assert cfg["tables"]["books"]["path"] == "/tmp/lfr-x/warehouse/books"   # interpolated after overrides


def test_cluster_profile_changes_master_and_paths():
    cfg = load_config(profile="cluster", environ={})
    assert cfg["spark"]["master"] is None
    assert cfg["paths"]["warehouse"].startswith("s3a://")      # URIs are not resolved as local paths
    assert cfg["embed"]["batch_size"] == 128


def test_profile_from_environment():
    assert load_config(environ={"LFR_PROFILE": "cluster"})["profile"] == "cluster"


@pytest.mark.parametrize("bad", ["score.kk=3", "nokey", "score.k.x=1"])
def test_bad_overrides_are_clear_errors(bad):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[bad], environ={})
    assert bad.split("=")[0].split(".")[-1] in str(err.value) or "key=value" in str(err.value)


def test_unknown_profile_and_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_config(profile="nope", environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml", environ={})
