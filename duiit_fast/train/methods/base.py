"""The interface of a method: what a family of settings declares, so the loop asks instead of
branching on the setting's name. Defaults are those of a predictor trained on real CT alone."""
from __future__ import annotations

from ..step import predictor_step


class Method:
    translators = False            # G, F and their critics (with their optimisers, pools and CT readers)
    samples_sources = False        # draws labelled source batches (translator warm-up, TL, MTL, DANN)
    loads_sources = True           # the source slices themselves are loaded (ORACLE uses their CT renders only)
    renders_sources_as_ct = False  # phantom: the source patients rendered as CT are loaded too
    native_extra_sets = False      # its extra sets exist at native resolution (the per-batch loaders can resize)
    frozen_during_epochs = ()      # networks kept in eval mode through the epochs
    cues_every_epoch = True        # label cues after every epoch (else once: the translators do not change)
    trains_jointly = False         # G learns from P's loss (eq. 3): where pred_feedback = ct_reader applies

    # The loop asks for values, decided here from the flags above: no caller branches on a flag.
    def translator_sources(self, cfg) -> tuple:
        """The sources it trains translators (and image pools) for."""
        return cfg.sources if self.translators else ()

    def sampled_sources(self, cfg) -> tuple:
        """The sources whose labelled batches it draws."""
        return cfg.sources if self.samples_sources else ()

    def loaded_sources(self, cfg) -> tuple:
        return cfg.sources if self.loads_sources else ()

    def sources_rendered_as_ct(self, cfg) -> tuple:
        return cfg.sources if self.renders_sources_as_ct else ()

    def pair_batch_size(self, cfg) -> int:
        """Real-CT slices per step (with as many of each sampled source)."""
        return cfg.batch_size if self.translators else self.batch_size(cfg)

    def native_sets(self, run) -> dict:
        """Its extra sets that the per-batch loaders resize from native resolution, by sampler name."""
        if not self.native_extra_sets:
            return {}
        return {f"extra:{k}": s for k, s in self.extra_sets(run).items() if s.native is not None}

    def reader_roles(self, cfg) -> list:
        """The CT readers its runs train or load: "cues" (label cues), "feedback" (G's feedback)."""
        if not self.translators:
            return []
        return (["cues"] if cfg.label_cues else []) + (["feedback"] if cfg.pred_feedback == "ct_reader" else [])

    def feedback_reader(self, run):
        """The CT reader G's discriminative gradient comes from (pred_feedback = ct_reader), or None: P."""
        if not (self.trains_jointly and run.cfg.pred_feedback == "ct_reader"):
            return None
        from ...models.reader import OnScale
        return OnScale(run.readers["feedback"], run.age_mean, run.age_std)

    def translator_nets(self, cfg, device) -> dict:
        """G, F and their critics, where it trains translators."""
        from ..networks import build_translator_nets
        return build_translator_nets(cfg, device) if self.translators else {}

    def uses_readers(self, cfg) -> bool:
        """Whether its runs use a CT reader: label cues, or G's feedback from one."""
        return self.translators and (cfg.label_cues or cfg.pred_feedback == "ct_reader")

    def check_uses(self, cfg) -> None:
        """A checkpoint or reader the configuration names is used by the run, or refused."""
        from ...errors import DuiitConfigError
        if cfg.translator_init is not None and not self.translators:
            raise DuiitConfigError(f"config translator_init: setting {cfg.setting} has no translators to start from it")
        if self.renders_sources_as_ct and not self.loads_sources and cfg.ct is not None:
            raise DuiitConfigError(f"config setting: {cfg.setting} needs the phantom (the source patients "
                                   "rendered as CT); it cannot run on data folders")
        if cfg.reader_path is not None and not self.uses_readers(cfg):
            raise DuiitConfigError("config reader_path: this run uses no CT reader (label_cues = false, "
                                   "pred_feedback = joint, or no translators): it would be ignored")

    def extra_nets(self, P, device) -> dict:
        """Networks beside P that train with it (MTL's source head, DANN's domain critic)."""
        return {}

    def ct_augmentation(self, cfg):
        """A per-slice transform of the real-CT batch (AUG-*), or None."""
        return None

    def batch_size(self, cfg) -> int:
        """Slices per batch of P's extra sets (and of real CT where no translator sets it)."""
        return cfg.predictor_batch_size

    def translator_budget(self, cfg, steps_per_epoch) -> int:
        """Translator-only steps before the epochs (steps_per_epoch: a callable, asked only if needed)."""
        return 0

    def pretrain_budget(self, cfg, steps_per_epoch) -> int:
        """P's steps on the source before the epochs (TL)."""
        return 0

    def extra_sets(self, run) -> dict:
        """What P's batches add to real CT, per source."""
        return {}

    def extra_weight(self, cfg) -> float:
        """The weight of each extra_sets() slice in P's loss (real CT: 1)."""
        return 1.0

    def extra_sizes(self, run) -> dict:
        """extra_sets()'s sizes, known before any network is trained (the samplers need them first)."""
        return {k: len(s) for k, s in self.extra_sets(run).items()}

    def batchnorm_groups(self, run, ct) -> list:
        """What P's BatchNorm statistics are re-estimated on for training_mix: real CT and every group
        its training batches mixed with it."""
        return [ct] + [s.images for s in self.extra_sets(run).values()]

    def step(self, run, x, r_x, measure_share: bool = False) -> dict:
        """One training step after the real-CT batch; the loss terms as 0-d device tensors."""
        sets = self.extra_sets(run)
        extra = [run.draw(sets[k], f"extra:{k}") for k in run.cfg.sources if k in sets]   # the run's source order
        return predictor_step(run.optimizers["pred"], x, r_x, extra, run.step_functions, run.world.size)
