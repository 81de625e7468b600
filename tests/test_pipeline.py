"""One batch pipeline (data/pipeline.py): one sampler, one augmentation spec for every engine,
exact resume on every engine."""
import dataclasses

import pytest
import torch

from duiit_fast import Trainer
from duiit_fast.data.loaders import SliceLoader
from duiit_fast.data.pipeline import Augment, BatchSampler, MemoryEngine


def _slices(n=10, size=24):
    torch.manual_seed(3)
    return [(torch.rand(size, size) * 2 - 1).numpy() for _ in range(n)], [float(20 + i) for i in range(n)]


def test_sampler_shards_each_permutation_and_resumes_exactly():
    seen = [set(BatchSampler(10, 5, torch.Generator().manual_seed(4), rank, 2).next().tolist()) for rank in (0, 1)]
    assert not (seen[0] & seen[1]) and len(seen[0] | seen[1]) == 10
    gen = torch.Generator().manual_seed(1)
    a = BatchSampler(7, 3, gen)
    a.next()
    state, rng = a.state_dict(), gen.get_state()
    expected = [a.next() for _ in range(4)]            # crosses a permutation boundary
    gen_b = torch.Generator()
    gen_b.set_state(rng)
    b = BatchSampler(7, 3, torch.Generator().manual_seed(99))
    b.generator = gen_b
    b.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(expected, [b.next() for _ in range(4)]))


@pytest.mark.parametrize("augment", [Augment(flip=False, crop_min=0.6), Augment(flip=False, shift=3)])
def test_every_engine_applies_every_augmentation(augment):
    slices, ages = _slices()
    plain = Augment(flip=False)
    images, age_t = torch.stack([torch.from_numpy(s)[None] for s in slices]), torch.tensor(ages)

    def memory(spec):
        return MemoryEngine(BatchSampler(10, 4, torch.Generator().manual_seed(0)), spec,
                            torch.Generator().manual_seed(1), "cpu").next_batch(images, age_t)

    def loader(spec):
        return SliceLoader(slices, ages, 24, 4, spec, seed=0, backend="torch").next_batch()
    for make in (memory, loader):
        base, aug = make(plain), make(augment)
        assert torch.equal(base.indices, aug.indices) and aug.images.shape == (4, 1, 24, 24)
        assert not torch.equal(base.images, aug.images), make.__name__
        if augment.shift:   # air enters at the border of a shifted slice
            assert (aug.images == -1).any()


def test_loader_resumes_exactly_with_crop_flip_and_shift():
    slices, ages = _slices()
    spec = Augment(flip=True, crop_min=0.7, shift=2)
    first = SliceLoader(slices, ages, 16, 3, spec, seed=5, backend="torch")
    batches = [first.next_batch() for _ in range(6)]
    resumed = SliceLoader(slices, ages, 16, 3, spec, seed=5, backend="torch")
    resumed.load_state_dict(batches[2].state)
    for want in batches[3:]:
        got = resumed.next_batch()
        assert torch.equal(got.indices, want.indices) and torch.equal(got.images, want.images)


def test_loader_reads_the_state_of_the_former_sampler():
    """Checkpoints written before the loaders shared BatchSampler stored the pending indices."""
    slices, ages = _slices()
    loader = SliceLoader(slices, ages, 16, 3, seed=5, backend="torch")
    state = loader.state_dict()
    old = {"pending": torch.tensor([4, 2, 9]), "order_rng": state["order_rng"], "box_rng": state["box_rng"]}
    fresh = SliceLoader(slices, ages, 16, 3, seed=5, backend="torch")
    fresh.load_state_dict(old)
    assert fresh.next_batch().indices.tolist() == [4, 2, 9]


def test_memory_training_with_crops_resumes_exactly_even_when_extended(tiny_config):
    """augment_crop_min on the memory engine (once loader-only); a 2-epoch run extended to 3 equals
    a 3-epoch run (its third epoch once trained at the 2-epoch schedule's final learning rate, 0)."""
    cfg = tiny_config("PURE-CT", augment_crop_min=0.8, augment_shift=2, epochs=3)
    whole = Trainer(cfg, progress=False)
    whole.fit()
    part = Trainer(dataclasses.replace(cfg, epochs=2, out_dir=cfg.out_dir + "-r"), progress=False)
    part.fit()
    rest = Trainer(dataclasses.replace(cfg, out_dir=cfg.out_dir + "-r"), progress=False)
    rest.fit(resume=True)
    keys = ("loss_pred", "val_mse")
    assert [[r[k] for k in keys if k in r] for r in rest.history] == [[r[k] for k in keys if k in r]
                                                                       for r in whole.history]
