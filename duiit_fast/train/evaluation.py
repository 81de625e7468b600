"""What the loop asks of a trained state, apart from the loop: each step's loss terms read and checked
for divergence, validation after each epoch and the best epoch on it, P's BatchNorm statistics
re-estimated before every evaluation, the translators' label cues and IS/FID. Functions of a Trainer `t` (its networks, data and readers)."""
from __future__ import annotations

import math

import torch

from ..errors import DuiitError
from .distributed import mean_over_ranks
from .throughput import matmul_ceiling
from ..eval.evaluate import patient_squared_errors, per_source, predict_ages, regression_metrics
from ..eval.label_cues import evenly_spaced, label_cue_metrics, reader_features
from ..models.predictor import recalibrate_batchnorm

LABEL_CUE_PROBES = 240        # source slices translated for the label-cue metric
RUNAWAY_FACTOR = 100          # validation MSE this many times that of predicting the mean: stop


def batchnorm_groups(t) -> list:
    """The images P's BatchNorm statistics are re-estimated on before an evaluation: real CT, and for
    training_mix every group P's training batches mixed with it (the method's, one batch each: 1:1)."""
    ct = t.data.ct_train.images
    return [ct] if t.cfg.bn_stats == "real_ct" else t.method.batchnorm_groups(t, ct)


def after_epoch(t, record: dict) -> None:
    """Validation MSE (and the best epoch on it) and the translators' label cues: rank 0's job
    (the full validation set, as in one process); the other ranks go on to the next epoch."""
    if not t.world.is_main:
        return
    t._eval_translations = {}   # G(source) of one probe set, translated once per evaluation
    try:
        _evaluate_epoch(t, record)
    finally:
        t._eval_translations = None


def translated_probes(t, source: str, count: int) -> torch.Tensor:
    """G(source) on `count` evenly spaced slices of the source set. Within one evaluation each probe
    set is translated once: the BatchNorm groups and the label cues ask for the same slices where
    their counts coincide (the experiment's: 240), and translating is most of an evaluation's time."""
    slices = t.data.sources[source]
    idx = evenly_spaced(len(slices), count)
    key = (source, tuple(int(i) for i in idx))
    cache = getattr(t, "_eval_translations", None)
    if cache is None or key not in cache:
        translated = t.translate(slices.images[idx], source)
        if cache is None:
            return translated
        cache[key] = translated
    return cache[key]


def _evaluate_epoch(t, record: dict) -> None:
    if t.cfg.bn_stats != "running":
        recalibrate_batchnorm(t.eval_predictor, batchnorm_groups(t), t.device)
    val = t.data.split("val")
    pred = predict_ages(t.eval_predictor, val.images, t.device, t.age_mean, t.age_std)
    record["val_mse"] = regression_metrics(pred, val)["mse"]
    # Per patient, so that the luck of choosing the best epoch can be taken out (cross_fitted_val_mse).
    record["val_patient_mse"], record["val_patient_slices"] = patient_squared_errors(pred, val)
    # Predicting the mean age scores about the ages' variance; far above it the run has run away.
    baseline = float(t.data.ct_train.ages.var(unbiased=False)) + float(
        (t.data.ct_val.ages.mean() - t.data.ct_train.ages.mean()) ** 2)
    if record["val_mse"] > RUNAWAY_FACTOR * max(baseline, 1.0):
        raise DuiitError(f"training ran away at epoch {t.epoch}: validation MSE {record['val_mse']:.3g} years² "
                         f"is over {RUNAWAY_FACTOR}x that of predicting the mean age ({baseline:.1f}); "
                         "lower the learning rates")
    if t.best is None or record["val_mse"] < t.best["val_mse"]:
        snapshot = {k: v.detach().cpu().clone() for k, v in t.eval_predictor.state_dict().items()}
        t.best = {"epoch": t.epoch, "val_mse": record["val_mse"], "P": snapshot}
    if "cues" in t.readers:
        # CycleGAN's translators are frozen during the epochs: their cues are measured once.
        if t.method.cues_every_epoch or t._last_cues is None:
            t._last_cues = label_cues(t)
        record.update(t._last_cues)

def label_cues(t) -> dict:
    """The label-cue reader on G(source) for a fixed probe set of source slices, per source
    (keys prefixed by the source when there are several)."""
    reader = t.readers["cues"]
    cached_reader, real_ct_features = t._real_ct_features
    if cached_reader is not reader:   # real CT and the frozen reader do not change between epochs
        ct = t.data.ct_train
        real_ct_features = reader_features(reader, ct.images[evenly_spaced(len(ct), LABEL_CUE_PROBES)], t.device)
        t._real_ct_features = (reader, real_ct_features)

    def metrics_of(k):
        s, as_ct = t.data.sources[k], t.data.sources_as_ct.get(k)
        idx = evenly_spaced(len(s), LABEL_CUE_PROBES)
        return label_cue_metrics(reader, translated_probes(t, k, LABEL_CUE_PROBES), s.ages[idx], t.device,
                                 None if as_ct is None else as_ct.images[idx], real_ct_features=real_ct_features)
    return per_source(t.cfg.sources, metrics_of)

def image_quality(t) -> dict:
    """Inception score of G(source) and its FID against real CT (the paper's Table 5), on the
    label-cue probe slices, per source; needs cfg.fid_weights (a local weights file)."""
    from ..eval.inception import inception_metrics, load_inception
    model = load_inception(t.cfg.fid_weights, t.device)
    ct = t.data.ct_train
    real = ct.images[evenly_spaced(len(ct), LABEL_CUE_PROBES)]

    def metrics_of(k):
        s = t.data.sources[k]
        translated = t.translate(s.images[evenly_spaced(len(s), LABEL_CUE_PROBES)], k)
        return inception_metrics(model, translated, real, t.device)
    return per_source(t.cfg.sources, metrics_of)


def read_step(t, parts: dict, where: str) -> dict:
    """The step's loss terms as floats, after checking them and every net's weights (after the
    update, so nothing non-finite is ever saved). One host sync per step for all of it: the
    terms and one reduction per net travel to the host as one tensor."""
    per_net = [torch.stack([p.detach().float().abs().sum() for p in net.parameters()]).sum()
               for net in t.nets.values()]
    names = list(parts)
    values = torch.stack([torch.as_tensor(parts[k], device=t.device).float().reshape(()) for k in names]
                         + per_net)
    values = mean_over_ranks(values, t.world).tolist()   # every rank logs and checks the same numbers
    read = dict(zip(names, values[:len(names)]))
    bad = [k for k, v in read.items() if not math.isfinite(v)]
    if bad:
        raise DuiitError(f"training diverged at {where}: loss term {bad[0]} = {read[bad[0]]} "
                         "(lower the learning rates)")
    for name, total in zip(t.nets, values[len(names):]):
        if not math.isfinite(total):
            raise DuiitError(f"training diverged at {where}: the weights of {name} are no longer finite "
                             f"after the update (losses {', '.join(f'{k} {v:.3g}' for k, v in read.items())}); "
                             "lower the learning rates")
    return read


def epoch_record(t, steps: int, seconds: float, slices: int, data_seconds: float, totals: dict) -> dict:
    """What the loop logs of an epoch: its time (of which drawing batches), throughput over all ranks,
    FLOP/s and MFU of the steps (against the device's matmul ceiling in the step's precision), learning
    rates and the mean of every loss term (grad_share: measured on the first step)."""
    record = {"epoch": t.epoch, "steps": steps, "seconds": seconds, "data_seconds": data_seconds,
              "step_seconds": seconds - data_seconds,
              "pairs_per_s": steps * t.batch_size * t.world.size / max(seconds, 1e-9),
              "slices_per_s": slices * t.world.size / max(seconds, 1e-9),   # CT, sources and extra sets
              "lr": [g["lr"] for o in t.optimizers.values() for g in o.param_groups]}
    if t.flops_per_step is not None:   # per device: each rank runs the step on its share of the batch
        flops = t.flops_per_step * steps / max(seconds - data_seconds, 1e-9)
        ceiling = matmul_ceiling(t.device, torch.bfloat16 if t.fast.bf16 else torch.float32)
        record.update(flops_per_step=t.flops_per_step, flops_per_s=flops, mfu=flops / ceiling)
    record.update({k: v / steps for k, v in totals.items() if k != "grad_share"})
    if "grad_share" in totals:
        record["grad_share"] = totals["grad_share"]
    return record
