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
