"""A setting's step and what it builds and loads are its method's (train/methods/): the registry picks
it by the setting's kind, and a new method is one class plus one registry line."""
from duiit_fast import Trainer
from duiit_fast.arms import SETTINGS
from duiit_fast.train.methods import METHODS, Duiit, Method, RawSources, method_of
from duiit_fast.train.methods.template import Template


def test_every_setting_kind_has_a_method():
    assert {s.split("-")[0] for s in SETTINGS} == set(METHODS)
    assert isinstance(method_of("MIX"), Duiit) and isinstance(method_of("NAIVE"), RawSources)
    assert all(isinstance(m, Method) for m in METHODS.values())
    translators = {k for k, m in METHODS.items() if m.translators}
    assert translators == {"MIX", "CYCLEGAN"}


def test_a_toy_method_trains_through_the_registry(tiny_config, monkeypatch):
    calls = []

    class Toy(Template):
        def step(self, run, x, r_x, measure_share=False):
            calls.append((x.shape[0], measure_share))
            return super().step(run, x, r_x, measure_share)
    monkeypatch.setitem(METHODS, "PURE", Toy())   # what one registry line does for a new kind
    trainer = Trainer(tiny_config("PURE-CT", epochs=2, decay_start_epoch=1), progress=False)
    history = trainer.fit()
    assert len(calls) == 2 * trainer.steps_per_epoch() and calls[0] == (4, True) and not calls[1][1]
    assert len(history) == 2 and all("val_mse" in r and r["loss"] > 0 for r in history)


def test_what_a_method_declares_decides_what_a_run_builds_and_loads(tiny_config, tmp_path):
    """The loop asks the method for values: the sources it translates, samples, loads and renders as
    CT, its pair batch, its readers; ORACLE on data folders is refused in one line."""
    import pytest
    from duiit_fast.errors import DuiitConfigError
    cfg = tiny_config("MIX-CT-MRI-PET", batch_size=3, predictor_batch_size=5)
    duiit, oracle, naive, tl = (method_of(k) for k in ("MIX", "ORACLE", "NAIVE", "TL"))
    assert duiit.translator_sources(cfg) == duiit.sampled_sources(cfg) == ("mri", "pet")
    assert duiit.pair_batch_size(cfg) == 3 and naive.pair_batch_size(cfg) == 5
    assert oracle.loaded_sources(cfg) == () and oracle.sources_rendered_as_ct(cfg) == ("mri", "pet")
    assert naive.translator_sources(cfg) == () and tl.sampled_sources(cfg) == ("mri", "pet")
    assert duiit.reader_roles(cfg) == ["cues"] and naive.reader_roles(cfg) == []
    with pytest.raises(DuiitConfigError, match="needs the phantom"):
        oracle.check_uses(tiny_config("ORACLE-CT-MRI", ct=str(tmp_path), mri=str(tmp_path)))
