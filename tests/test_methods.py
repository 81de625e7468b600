"""A setting's step is its method's (train/methods/): the registry picks it by the setting's kind, and a
new method is one module plus one registry line."""
import types

from duiit_fast import Trainer
from duiit_fast.train import methods
from duiit_fast.train.methods import METHODS, method_of, template


def test_every_setting_kind_has_a_method():
    from duiit_fast.config import SETTINGS
    assert {s.split("-")[0] for s in SETTINGS} == set(METHODS)
    assert method_of("MIX") is methods.duiit and method_of("NAIVE") is methods.predictor_only


def test_a_toy_method_trains_through_the_registry(tiny_config, monkeypatch):
    calls = []

    def step(run, x, r_x, measure_share=False):
        calls.append((x.shape[0], measure_share))
        return template.step(run, x, r_x, measure_share)
    toy = types.ModuleType("toy")
    toy.step = step
    monkeypatch.setitem(METHODS, "PURE", toy)   # what one registry line does for a new kind
    trainer = Trainer(tiny_config("PURE-CT", epochs=2, decay_start_epoch=1), progress=False)
    history = trainer.fit()
    assert len(calls) == 2 * trainer.steps_per_epoch() and calls[0] == (4, True) and not calls[1][1]
    assert len(history) == 2 and all("val_mse" in r and r["loss"] > 0 for r in history)
