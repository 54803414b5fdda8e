"""Accuracy of the CPU demo model against CPU-scale stock baselines, same data and training budget.

:func:`run_accuracy` trains each config with ``tools/train.py`` (all inherit the demo schedule: 450
iterations of 2 images, seed 0) on the synthetic EVICAN of ``make demo``, predicts the eval split
once, and scores the predictions twice with :class:`DifficultyCocoMetric`: as predicted and after
image-level culture consensus (:func:`apply_culture_consensus`, applied post hoc so that the stock
heads, which have no consensus option, are treated exactly like DeepCIS's).
"""
import contextlib
import copy
import io
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from deepcis_mm.datasets.evican import LEVELS

# (key, label, config) of the models compared by `scripts/analysis_tools/benchmark.py accuracy`
ACCURACY_MODELS = (
    ('d', 'DeepCIS CPU demo (S14-DCNv2)', 'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py'),
    ('cpu-mask', 'Mask R-CNN R18-c16-FPN', 'configs/baselines/mask-rcnn_r18-c16_fpn_demo_synthetic-evican.py'),
    ('cpu-cascade', 'Cascade Mask R-CNN R18-c16-FPN',
     'configs/baselines/cascade-mask-rcnn_r18-c16_fpn_demo_synthetic-evican.py'),
    ('cpu-rtmdet-ins', 'RTMDet-Ins-tiny (CSPNeXt-t, PAFPN)',
     'configs/baselines/rtmdet-ins_cspnext-t_pafpn_demo_synthetic-evican.py'),
)
DATA_SRC = 'data/synthetic_evican'
DATA_ROOT = 'data/synthetic_evican_prepared'
# the metric's flat keys shown in the table, in order
COLUMNS = ([f'bbox_L{lvl}_mAP' for lvl in LEVELS] + ['bbox_mAP'] +
           [f'segm_L{lvl}_mAP' for lvl in LEVELS] + ['segm_mAP'] +
           ['bbox_agnostic_mAP', 'segm_agnostic_mAP', 'culture_acc'])


def ensure_demo_data(src: str = DATA_SRC, dst: str = DATA_ROOT, log=print) -> None:
    """Write and convert the synthetic EVICAN of ``make demo`` (scripts/demo.sh stages 1-2, same
    arguments) unless it is there already."""
    from scripts.dataset_converters.evican_release import convert_release
    from scripts.dataset_converters.synthetic_evican import DEMO_DATA, make_synthetic_evican
    if osp.isfile(osp.join(dst, 'annotations', 'instances_eval.json')):
        return
    log(f'writing the demo data: {src} -> {dst}')
    make_synthetic_evican(src, **DEMO_DATA)
    convert_release(src, dst, verbose=False)


def train(config: str, work_dir: str, log=print) -> str:
    """Train ``config`` with tools/train.py into ``work_dir``; return the last checkpoint."""
    os.makedirs(work_dir, exist_ok=True)
    log_file = osp.join(work_dir, 'train.log')
    t0 = time.time()
    with open(log_file, 'w') as f:
        rc = subprocess.call([sys.executable, 'tools/train.py', config, '--work-dir', work_dir],
                             stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
        raise RuntimeError(f'training {config} failed (exit {rc}), see {log_file}')
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    log(f'trained {config} in {time.time() - t0:.0f} s -> {ckpt}')
    return ckpt


def score_with_consensus(batches: Iterable[Tuple[dict, list]], build_evaluator: Callable, dataset_meta: dict,
                         nms_cfg: dict, n_images: int) -> Dict[str, Dict[str, float]]:
    """Score (data batch, predicted samples) pairs twice: as predicted ('off') and after image-level
    culture consensus ('on', :func:`apply_culture_consensus` with ``nms_cfg`` and the class table of
    ``dataset_meta``, the function the DeepCIS head uses). Returns flat metrics."""
    from deepcis_mm.datasets import class_table
    from deepcis_mm.models import apply_culture_consensus
    table = class_table(dataset_meta)
    evaluators = {name: build_evaluator() for name in ('off', 'on')}
    for ev in evaluators.values():
        ev.dataset_meta = dataset_meta
    for data, outputs in batches:
        evaluators['off'].process(data_samples=outputs, data_batch=data)
        voted = []
        for sample in outputs:
            sample = sample.clone()
            sample.pred_instances = apply_culture_consensus(sample.pred_instances, table, nms_cfg)
            voted.append(sample)
        evaluators['on'].process(data_samples=voted, data_batch=data)
    return {name: {k.split('/', 1)[-1]: v for k, v in ev.evaluate(n_images).items()}
            for name, ev in evaluators.items()}


def evaluate(config: str, checkpoint: str, work_dir: str,
             cfg_options: Optional[dict] = None) -> Dict[str, Dict[str, float]]:
    """Predict the config's test split once; score it as is ('off') and after consensus ('on')."""
    import torch
    from mmengine.runner import load_checkpoint

    from deepcis_mm.engine import set_dataset_meta
    from deepcis_mm.engine.runner_utils import build_runner, load_config
    cfg = load_config(config, cfg_options, work_dir=work_dir)
    cfg.model.backbone.init_cfg = None
    cfg.log_level = 'WARNING'  # the benchmark prints its own table; no config dump per model
    runner = build_runner(cfg)
    load_checkpoint(runner.model, checkpoint, map_location='cpu', logger='silent')
    model, loader = runner.model, runner.test_dataloader
    set_dataset_meta(model, loader.dataset.metainfo)  # as DatasetMetaHook does before runner.test()
    model.eval()

    def predictions():
        with torch.no_grad():
            for data in loader:
                yield data, model.test_step(data)

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress prints
        return score_with_consensus(predictions(),
                                    lambda: runner.build_evaluator(copy.deepcopy(cfg.test_evaluator)),
                                    loader.dataset.metainfo, consensus_nms_cfg(model), len(loader.dataset))


def consensus_nms_cfg(model) -> dict:
    """The NMS settings of the head that makes the final detections (two-stage: the RoI head; one-stage
    such as RTMDet-Ins: the dense head), reused after consensus relabelling."""
    head = getattr(model, 'roi_head', None) or model.bbox_head
    return head.test_cfg.nms


def run_accuracy(models: Sequence[tuple] = ACCURACY_MODELS, work_dir: str = 'work_dirs/benchmark/accuracy',
                 log=print) -> List[Dict]:
    """Train and evaluate every model; one row per (model, consensus off/on)."""
    ensure_demo_data(log=log)
    rows = []
    for key, label, config in models:
        wd = osp.join(work_dir, key)
        t0 = time.time()
        ckpt = train(config, wd, log)
        train_s = time.time() - t0
        scores = evaluate(config, ckpt, wd)
        for consensus in ('off', 'on'):
            rows.append(dict(key=key, label=label, config=config, consensus=consensus,
                             train_s=train_s, metrics=scores[consensus]))
            log(f'[{key}] consensus {consensus}: ' +
                ', '.join(f'{c} {scores[consensus].get(c, float("nan")):.3f}' for c in COLUMNS))
    return rows
