"""Accuracy of the CPU demo model against CPU-scale stock baselines, same data and training budget.

:func:`run_accuracy` trains each config with ``tools/train.py`` (all inherit the demo schedule: 450
iterations of 2 images, seed 0) on the synthetic EVICAN of a data preset (``demo``: the data of
``make demo`` plus co-culture eval images; ``hard``: 8 cultures), predicts each eval subset
(single-culture eval, co-culture eval) once, and scores the predictions with
:class:`DifficultyCocoMetric`: as predicted and after image-level culture consensus
(:func:`apply_culture_consensus`, applied post hoc so that the stock heads, which have no consensus
option, are treated exactly like DeepCIS's). A model with the image-level culture branch is scored
once per test-time combination (:data:`IMAGE_CULTURE_OPTIONS`) from the same backbone/RPN pass.
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
    ('d-img', 'DeepCIS CPU demo + image culture',
     'configs/demo/deepcis-imgculture_s14-dcnv2_fpn_demo_synthetic-evican.py'),
)
# data presets: synthetic EVICAN written by make_synthetic_evican (demo = the `make demo` arguments, whose
# files are byte-identical, plus co-culture eval images as the extra eval subset 'coculture')
PRESETS = {
    'demo': dict(cultures=4, n_train=48, n_val=8, n_eval_per_level=10, n_coculture=12, seed=0),
    'hard': dict(cultures=8, n_train=48, n_val=8, n_eval_per_level=10, n_coculture=12, seed=0),
    # the demo data with 4x the training images (same eval images): does culture generalise with more data?
    'demo-x4': dict(cultures=4, n_train=192, n_val=8, n_eval_per_level=10, n_coculture=12, seed=0),
}
# eval subsets: name -> annotation file under <prepared>/annotations/
EVAL_SUBSETS = (('single-culture', 'instances_eval.json'), ('co-culture', 'instances_eval_coculture.json'))
# test-time combinations of a model with the image culture branch (test_cfg.rcnn.image_culture)
IMAGE_CULTURE_OPTIONS = (
    ('per-instance (mode none)', dict(mode='none')),
    ('product, weight 1', dict(mode='product', weight=1.0)),
    ('product, weight 2', dict(mode='product', weight=2.0)),
    ('kind x image culture (mode image)', dict(mode='image')),
    # each box's culture from the window around it (half the image's shorter side): co-cultures in regions
    ('product, weight 1, window 0.5', dict(mode='product', weight=1.0, window=0.5)),
    ('kind x window culture (mode image, window 0.5)', dict(mode='image', window=0.5)),
)
# scorings of a model without the branch (evaluate's keys -> table labels)
SCORINGS = {'off': 'as predicted', 'on': '+ consensus vote',
            'oracle': '+ ground-truth image culture (ceiling)'}
DATA_SRC = 'data/synthetic_evican'
DATA_ROOT = 'data/synthetic_evican_prepared'
# the metric's flat keys shown in the table, in order
COLUMNS = ([f'bbox_L{lvl}_mAP' for lvl in LEVELS] + ['bbox_mAP'] +
           [f'segm_L{lvl}_mAP' for lvl in LEVELS] + ['segm_mAP'] +
           ['bbox_agnostic_mAP', 'segm_agnostic_mAP', 'culture_acc'])
# the culture table: what the image culture branch is measured by
CULTURE_COLUMNS = ['bbox_mAP', 'segm_mAP', 'segm_agnostic_mAP', 'segm_ratio', 'culture_acc', 'img_culture_acc']


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


def ensure_preset_data(preset: str, root: str = 'data/benchmark', log=print) -> str:
    """Write and convert the data of ``preset`` (:data:`PRESETS`) under ``root/<preset>`` unless it is
    there already; return the prepared folder."""
    from scripts.dataset_converters.evican_release import convert_release
    from scripts.dataset_converters.synthetic_evican import CULTURES, make_synthetic_evican
    p = PRESETS[preset]
    src, dst = osp.join(root, preset, 'release'), osp.join(root, preset, 'prepared')
    if not all(osp.isfile(osp.join(dst, 'annotations', f)) for _, f in EVAL_SUBSETS):
        log(f'writing the {preset} data: {src} -> {dst}')
        make_synthetic_evican(src, CULTURES[:p['cultures']], n_train=p['n_train'], n_val=p['n_val'],
                              n_eval_per_level=p['n_eval_per_level'], seed=p['seed'], n_coculture=p['n_coculture'])
        convert_release(src, dst, verbose=False)
    return dst


def _key_paths(node, name: str, prefix: str = '') -> List[str]:
    """Dotted paths of every key ``name`` in a config tree (lists by index)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    out = []
    for k, v in items:
        path = f'{prefix}{k}'
        if k == name:
            out.append(path)
        out += _key_paths(v, name, path + '.')
    return out


def preset_options(config: str, data_root: str, n_cultures: int,
                   eval_file: str = 'instances_eval.json') -> Dict[str, object]:
    """``--cfg-options`` that point ``config`` at a preset's data (every dataloader's data_root, the
    evaluators' ann_file, the test split's file) and size its heads for ``n_cultures`` cultures
    (every ``num_classes`` = 2 x cultures, every ``num_cultures``)."""
    from mmengine.config import Config
    cfg = Config.fromfile(config).to_dict()
    root = data_root.rstrip('/') + '/'
    opts: Dict[str, object] = {}
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for path in _key_paths(cfg.get(loader, {}), 'data_root', loader + '.'):
            opts[path] = root
    for ev in ('val_evaluator', 'test_evaluator'):
        for path in _key_paths(cfg.get(ev, {}), 'ann_file', ev + '.'):
            opts[path] = root + 'annotations/instances_eval.json'
    for path in _key_paths(cfg.get('test_dataloader', {}), 'ann_file', 'test_dataloader.'):
        opts[path] = 'annotations/' + eval_file
    for path in _key_paths(cfg.get('test_evaluator', {}), 'ann_file', 'test_evaluator.'):
        opts[path] = root + 'annotations/' + eval_file
    for path in _key_paths(cfg['model'], 'num_classes', 'model.'):
        opts[path] = 2 * n_cultures
    for path in _key_paths(cfg['model'], 'num_cultures', 'model.'):
        opts[path] = n_cultures
    return opts


def train(config: str, work_dir: str, log=print, cfg_options: Optional[dict] = None, reuse: bool = False) -> str:
    """Train ``config`` with tools/train.py into ``work_dir``; return the last checkpoint. ``reuse``:
    a finished training already in ``work_dir`` (its last_checkpoint) is used as it is."""
    last = osp.join(work_dir, 'last_checkpoint')
    if reuse and osp.isfile(last):
        with open(last) as f:
            ckpt = f.read().strip()
        if osp.isfile(ckpt) and ckpt.endswith('.pth'):
            log(f'reusing {ckpt} (--reuse)')
            return ckpt
    os.makedirs(work_dir, exist_ok=True)
    log_file = osp.join(work_dir, 'train.log')
    t0 = time.time()
    cmd = [sys.executable, 'tools/train.py', config, '--work-dir', work_dir]
    if cfg_options:
        # no evaluation inside the training: the benchmark scores every subset itself afterwards
        opts = dict(cfg_options, **{'train_cfg.val_interval': 10 ** 6})
        cmd += ['--cfg-options'] + [f'{k}={v}' for k, v in opts.items()]
    with open(log_file, 'w') as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
        raise RuntimeError(f'training {config} failed (exit {rc}), see {log_file}')
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    log(f'trained {config} in {time.time() - t0:.0f} s -> {ckpt}')
    return ckpt


def ground_truth_culture(sample, cultures: Sequence) -> Optional[object]:
    """The one culture an image's ground truth names (None if it names none or several)."""
    names = {cultures[int(lab)] for lab in sample.gt_instances.labels}
    return names.pop() if len(names) == 1 else None


def relabelled(outputs: list, table, nms_cfg: dict, oracle: bool = False) -> list:
    """Copies of predicted samples after image-level consensus (:func:`apply_culture_consensus`, the
    function the DeepCIS head uses); ``oracle``: relabelled to the ground truth's culture instead of
    the vote's (the ceiling of any image-level culture decision on single-culture images)."""
    from deepcis_mm.models import apply_culture_consensus
    out = []
    for sample in outputs:
        culture = ground_truth_culture(sample, table[0]) if oracle else None
        sample = sample.clone()
        if not oracle or culture is not None:
            sample.pred_instances = apply_culture_consensus(sample.pred_instances, table, nms_cfg, culture)
        out.append(sample)
    return out


def score_with_consensus(batches: Iterable[Tuple[dict, list]], build_evaluator: Callable, dataset_meta: dict,
                         nms_cfg: dict, n_images: int, oracle: bool = False) -> Dict[str, Dict[str, float]]:
    """Score (data batch, predicted samples) pairs as predicted ('off'), after image-level culture
    consensus ('on', with ``nms_cfg`` and the class table of ``dataset_meta``) and, with ``oracle``,
    relabelled to the ground-truth culture ('oracle'). Returns flat metrics per scoring."""
    from deepcis_mm.datasets import class_table
    table = class_table(dataset_meta)
    evaluators = {name: build_evaluator() for name in ('off', 'on') + (('oracle', ) if oracle else ())}
    for ev in evaluators.values():
        ev.dataset_meta = dataset_meta
    for data, outputs in batches:
        evaluators['off'].process(data_samples=outputs, data_batch=data)
        evaluators['on'].process(data_samples=relabelled(outputs, table, nms_cfg), data_batch=data)
        if oracle:
            evaluators['oracle'].process(data_samples=relabelled(outputs, table, nms_cfg, oracle=True),
                                         data_batch=data)
    return {name: {k.split('/', 1)[-1]: v for k, v in ev.evaluate(n_images).items()}
            for name, ev in evaluators.items()}


def has_image_culture(model) -> bool:
    """Whether ``model`` has the image-level culture branch (ImageCultureCascadeRoIHead)."""
    return hasattr(getattr(model, 'roi_head', None), 'img_culture_head')


def predict_image_culture_options(model, data: dict, options: Sequence[tuple]) -> Dict[str, list]:
    """One backbone + RPN pass, then the RoI head once per test-time combination ``(name, dict)``:
    the options differ only in how each box's class scores are combined before NMS."""
    import copy as _copy
    data = model.data_preprocessor(data, False)
    x = model.extract_feat(data['inputs'])
    rpn = model.rpn_head.predict(x, data['data_samples'], rescale=False)
    out = {}
    saved = model.roi_head.test_cfg.get('image_culture')
    try:
        for name, opt in options:
            model.roi_head.test_cfg['image_culture'] = dict(opt)
            samples = _copy.deepcopy(data['data_samples'])
            results = model.roi_head.predict(x, _copy.deepcopy(rpn), samples, rescale=True)
            out[name] = model.add_pred_to_datasample(samples, results)
    finally:
        model.roi_head.test_cfg['image_culture'] = saved
    return out


def evaluate(config: str, checkpoint: str, work_dir: str, cfg_options: Optional[dict] = None,
             image_culture_options: Optional[Sequence[tuple]] = None,
             oracle: bool = False) -> Dict[str, Dict[str, float]]:
    """Predict the config's test split once; score it as is ('off'), after consensus ('on') and, with
    ``oracle``, with the ground-truth culture ('oracle', :func:`relabelled`).

    With ``image_culture_options`` (a model with the image culture branch): one prediction per option
    from the same backbone/RPN pass, scored as ``<name>`` and ``<name> + consensus vote``."""
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
    if image_culture_options and has_image_culture(model):
        return _evaluate_options(model, loader, cfg, runner, image_culture_options)

    def predictions():
        with torch.no_grad():
            for data in loader:
                yield data, model.test_step(data)

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress prints
        return score_with_consensus(predictions(),
                                    lambda: runner.build_evaluator(copy.deepcopy(cfg.test_evaluator)),
                                    loader.dataset.metainfo, consensus_nms_cfg(model), len(loader.dataset),
                                    oracle=oracle)


def _evaluate_options(model, loader, cfg, runner, options) -> Dict[str, Dict[str, float]]:
    import torch
    from deepcis_mm.datasets import class_table
    table = class_table(loader.dataset.metainfo)
    evaluators = {}
    for name, _ in options:
        for tag in (name, f'{name} + consensus vote'):
            evaluators[tag] = runner.build_evaluator(copy.deepcopy(cfg.test_evaluator))
            evaluators[tag].dataset_meta = loader.dataset.metainfo
    nms_cfg = consensus_nms_cfg(model)
    with contextlib.redirect_stdout(io.StringIO()):
        with torch.no_grad():
            for data in loader:
                for name, outputs in predict_image_culture_options(model, data, options).items():
                    evaluators[name].process(data_samples=outputs, data_batch=data)
                    evaluators[f'{name} + consensus vote'].process(
                        data_samples=relabelled(outputs, table, nms_cfg), data_batch=data)
        return {tag: {k.split('/', 1)[-1]: v for k, v in ev.evaluate(len(loader.dataset)).items()}
                for tag, ev in evaluators.items()}


def consensus_nms_cfg(model) -> dict:
    """The NMS settings of the head that makes the final detections (two-stage: the RoI head; one-stage
    such as RTMDet-Ins: the dense head), reused after consensus relabelling."""
    head = getattr(model, 'roi_head', None) or model.bbox_head
    return head.test_cfg.nms


def _with_ratio(metrics: Dict[str, float]) -> Dict[str, float]:
    """``segm_ratio``: culture-aware / class-agnostic segm mAP (the share of AP that culture keeps)."""
    a, b = metrics.get('segm_mAP'), metrics.get('segm_agnostic_mAP')
    ok = a is not None and b is not None and b == b and a == a and b > 0
    return dict(metrics, segm_ratio=a / b if ok else float('nan'))


def run_accuracy(models: Sequence[tuple] = ACCURACY_MODELS, work_dir: str = 'work_dirs/benchmark/accuracy',
                 log=print, presets: Sequence[str] = ('demo', ), subsets: Sequence[str] = ('single-culture', ),
                 reuse: bool = False) -> List[Dict]:
    """Train and evaluate every model on every preset and eval subset; one row per (preset, subset,
    model, scoring): as predicted / + consensus vote, or each image culture combination."""
    rows = []
    files = dict(EVAL_SUBSETS)
    for preset in presets:
        root = ensure_preset_data(preset, log=log)
        n_cult = PRESETS[preset]['cultures']
        for key, label, config in models:
            wd = osp.join(work_dir, preset, key)
            t0 = time.time()
            ckpt = train(config, wd, log, preset_options(config, root, n_cult), reuse=reuse)
            train_s = time.time() - t0
            for subset in subsets:
                opts = preset_options(config, root, n_cult, files[subset])
                # the ground-truth culture ceiling where every image holds one culture
                scores = evaluate(config, ckpt, osp.join(wd, f'eval_{subset}'), opts, IMAGE_CULTURE_OPTIONS,
                                  oracle=subset == 'single-culture')
                if 'off' in scores:
                    scores = {SCORINGS[k]: v for k, v in scores.items()}
                for scoring, metrics in scores.items():
                    metrics = _with_ratio(metrics)
                    rows.append(dict(preset=preset, subset=subset, key=key, label=label, config=config,
                                     scoring=scoring, consensus='on' if 'consensus' in scoring else 'off',
                                     train_s=train_s, checkpoint=ckpt, metrics=metrics))
                    log(f'[{preset}/{subset}/{key}] {scoring}: ' +
                        ', '.join(f'{c} {metrics.get(c, float("nan")):.3f}' for c in CULTURE_COLUMNS))
    return rows
