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
    assert cfg["spark"]["conf"]["spark.executor.cores"] == 4     # a nested key of the profile wins
    assert cfg["embed"]["batch_size"] == load_config(environ={})["embed"]["batch_size"]   # the rest: the file's


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


def test_settings_parse_every_section_once_typed_and_frozen():
    import dataclasses

    from lfr.settings import Settings

    s = Settings.from_config(load_config(overrides=["embed.batch_size=8", "score.k=20"], environ={}))
    assert (s.embed.batch_size, s.score.k, s.paths.delta_jars_dir) == (8, 20, "auto")
    assert s.tables.books.path == str(PROJECT_ROOT / "work" / "warehouse" / "books")
    assert s.eval.ks == [1, 10, 100] and s.model.as_dict()["pooling"] == "mean"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.embed.batch_size = 1     # type: ignore[misc]


@pytest.mark.parametrize("edit, named", [
    (lambda c: c["embed"].update(bogus=1), "embed.bogus"),          # unknown key in a section
    (lambda c: c.update(nosection={}), "nosection"),                  # unknown section
    (lambda c: c["score"].pop("k"), "score.k"),                       # missing: yaml is where defaults live
    (lambda c: c["embed"].update(batch_size="many"), "batch_size"),   # wrong type
])
def test_settings_errors_name_the_key(edit, named):
    from lfr.settings import Settings

    cfg = load_config(environ={})
    edit(cfg)
    with pytest.raises(ConfigError, match=named):
        Settings.from_config(cfg)


def test_spark_keys_go_to_spark_and_the_jars_folder_is_not_one():
    cfg = load_config(overrides=["spark.jars_dir=/x", "paths.delta_jars_dir=null"], environ={})
    assert cfg["spark"]["conf"]["spark.jars_dir"] == "/x" and cfg["paths"]["delta_jars_dir"] is None
    assert load_config(profile="cluster", environ={})["paths"]["delta_jars_dir"] is None


def test_interpolation_of_an_unknown_key_is_a_config_error():
    with pytest.raises(ConfigError, match="nope"):
        load_config(overrides=["paths.warehouse=${paths.nope}/w"], environ={})


def test_installed_wheel_uses_the_packaged_yaml_and_the_current_directory(monkeypatch, tmp_path):
    import lfr.config as config

    monkeypatch.setattr(config, "DEFAULT_CONF_FILE", tmp_path / "absent.yaml")
    monkeypatch.chdir(tmp_path)
    assert config.default_conf_file() == (config.PACKAGED_CONF_FILE, tmp_path)
    cfg = config.load_config(environ={})
    assert cfg["paths"]["warehouse"] == str(tmp_path / "work" / "warehouse")
