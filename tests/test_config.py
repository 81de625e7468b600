"""TrainConfig: the paper's defaults, TOML loading, and one clear line for every bad value."""
import dataclasses

import pytest

from duiit_fast import TrainConfig
from duiit_fast.config import PhantomConfig
from duiit_fast.arms import SETTINGS
from duiit_fast.cli import main
from duiit_fast.errors import DuiitConfigError


def test_defaults_are_the_papers():
    cfg = TrainConfig()
    assert (cfg.lr_translator, cfg.lr_predictor, cfg.lambda_cyc, cfg.lambda_pred) == (2e-4, 1e-3, 10.0, 1e-3)
    assert (cfg.batch_size, cfg.epochs, cfg.decay_epoch, cfg.beta1, cfg.pool_size) == (16, 200, 100, 0.5, 50)
    assert cfg.predictor == "resnet50" and cfg.resolved_n_blocks == 9
    assert TrainConfig(image_size=128).resolved_n_blocks == 6


def test_settings_parse_sources():
    assert TrainConfig(setting="MIX-CT-MRI-PET").sources == ("mri", "pet")
    assert TrainConfig(setting="PURE-CT").sources == ()
    assert TrainConfig(setting="ORACLE-CT-PET").kind == "ORACLE"


@pytest.mark.parametrize("field,value,message", [
    ("setting", "MIX-CT-XRAY", "config setting: must be one of"),
    ("image_size", -64, "config image_size"),
    ("image_size", 30, "config image_size"),
    ("batch_size", 0, "config batch_size"),
    ("decay_start_epoch", -1, "config decay_start_epoch"),   # a schedule beyond epochs: test_examples
    ("lambda_pred", -1.0, "config lambda_pred"),
    ("ct", "/no/such/folder", "data folder /no/such/folder does not exist"),
    ("backend", "gpu", "config backend"),
    ("device", "tpu", "config device"),
])
def test_bad_values_raise_one_clear_error(field, value, message):
    with pytest.raises(DuiitConfigError, match=message):
        TrainConfig(**{field: value}).validate()


def test_by_setting_statistics_resolve_to_each_settings_validation_choice():
    from duiit_fast.arms import BN_STATS_BY_SETTING
    resolved = {s: TrainConfig(setting=s, predictor_bn_stats="by_setting").validate().bn_stats
                for s in ("PURE-CT", "NAIVE-CT-MRI", "ORACLE-CT-MRI", "CYCLEGAN-CT-MRI", "MIX-CT-MRI", "DANN-CT-MRI",
                          "MTL-CT-PET", "MIX-CT-PET", "AUG-AUTO")}
    assert resolved == {"PURE-CT": "real_ct", "NAIVE-CT-MRI": "training_mix", "ORACLE-CT-MRI": "training_mix",
                        "CYCLEGAN-CT-MRI": "real_ct", "MIX-CT-MRI": "training_mix", "DANN-CT-MRI": "training_mix",
                        "MTL-CT-PET": "training_mix", "MIX-CT-PET": "real_ct", "AUG-AUTO": "real_ct"}   # not measured: the old statistic
    assert set(BN_STATS_BY_SETTING) <= set(SETTINGS)
    # An explicit statistic is every setting's.
    assert TrainConfig(setting="NAIVE-CT-MRI", predictor_bn_stats="real_ct").bn_stats == "real_ct"


def test_removed_knobs_load_when_off_and_are_refused_when_on():
    from duiit_fast.validation import REMOVED_AT, REMOVED_KNOBS
    assert TrainConfig.from_dict(dict(REMOVED_KNOBS)).validate() == TrainConfig().validate()   # an old checkpoint's config
    with pytest.raises(DuiitConfigError, match=f"cycle_noise = 0.1: a knob tried and rejected.*commit {REMOVED_AT}"):
        TrainConfig.from_dict({"cycle_noise": 0.1})


def test_toml_loading_and_unknown_fields(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('setting = "PURE-CT"\nimage_size = 64\n[phantom]\nct_train_patients = 5\n')
    cfg = TrainConfig.from_toml(good)
    assert cfg.setting == "PURE-CT" and cfg.image_size == 64 and cfg.phantom.ct_train_patients == 5
    bad = tmp_path / "bad.toml"
    bad.write_text('setting = "PURE-CT"\nlearning_rate = 1\n')
    with pytest.raises(DuiitConfigError, match="unknown field.*learning_rate"):
        TrainConfig.from_toml(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("setting = \n")
    with pytest.raises(DuiitConfigError, match="not valid TOML"):
        TrainConfig.from_toml(broken)
    typed = tmp_path / "typed.toml"
    typed.write_text('epochs = "many"\n')
    with pytest.raises(DuiitConfigError, match="epochs: must be an integer"):
        TrainConfig.from_toml(typed)


@pytest.mark.parametrize("toml,expected", [
    ('setting = "MIX-CT-FOO"\n', "config setting"),
    ("image_size = -8\n", "config image_size"),
    ('ct = "missing_folder"\n', "does not exist"),
])
def test_cli_prints_one_line_and_exits_2(tmp_path, capsys, toml, expected):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    assert main(["train", "--config", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err
    assert main(["train", "--config", str(tmp_path / "nope.toml")]) == 2


def test_the_configuration_page_is_generated_from_the_code():
    from pathlib import Path
    from duiit_fast import config_doc
    page = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    assert page == config_doc.render(), "run: python -m duiit_fast.config_doc > docs/configuration.md"
    for cls, prefix in ((TrainConfig, ""), (PhantomConfig, "phantom.")):
        documented = {name: comment for _, name, comment in config_doc._field_comments(cls)}
        assert set(documented) == {f.name for f in dataclasses.fields(cls)}
        assert all(documented.values()), [n for n, c in documented.items() if not c]   # every field says what it does


def test_fields_moved_into_tables_read_from_their_flat_names():
    """Configuration files and checkpoints written before the [fast] and [augment] tables name their
    fields flat; they read as the tables' fields, and a flat name given with the table wins."""
    from duiit_fast.config import FastConfig, leaf_fields
    old = {"compile": "on", "precision": "bf16", "fused_optimizer": False, "augment_flip": False,
           "augment_crop_min": 0.8, "fast": {"compile": "off"}}
    cfg = TrainConfig.from_dict(old)
    assert cfg.fast == FastConfig(compile="on", precision="bf16", fused_optimizer=False)
    assert (cfg.augment.flip, cfg.augment.shift, cfg.augment.crop_min) == (False, 0, 0.8)
    assert leaf_fields(old) == {"fast.compile": "on", "fast.precision": "bf16", "fast.fused_optimizer": False,
                                "augment.flip": False, "augment.crop_min": 0.8}
    assert TrainConfig().with_settings(["compile=on"]).fast.compile == "on"
    assert TrainConfig().with_settings(["fast.compile=off", "augment.shift=3"]).augment.shift == 3
    with pytest.raises(DuiitConfigError, match="fast.speed"):
        TrainConfig.from_dict({"fast": {"speed": 1}})
    with pytest.raises(DuiitConfigError, match="fast.precision: must be one of"):
        TrainConfig().with_settings(["precision=fp16"])
