"""Training / inference speed and peak memory of one detector config at a fixed input size, in this
process: the worker that :func:`~.speed_suite.run_speed` starts once per model and phase
(``python -m scripts.analysis_tools.benchmarks.speed CONFIG train|infer ...``, one JSON line out; CPU:
the process's peak resident set, GPU: ``torch.cuda.max_memory_allocated``).
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from typing import Dict, Optional

import torch

from .profiling import FlopCount, ForwardTimer, peak_mib, sync
from .synthetic_batch import collate, synthetic_batch


def build_model(config: str, device: str, dets: Optional[int] = None, proposals: Optional[int] = None):
    """The config's detector with random weights (no download), SyncBN -> BN (one process).

    ``dets``: make inference return exactly this many detections per image (score threshold 0,
    ``max_per_img=dets``), so that every model's mask branch runs on the same number of objects
    (random weights score almost nothing above the configs' thresholds). ``proposals``: test-time RPN
    proposals per image (``test_cfg.rpn.max_per_img``) instead of the config's.
    """
    import deepcis_mm  # noqa: F401  (registers DeepCIS modules)
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.logging import MMLogger

    from deepcis_mm.engine.cpu_fallback import apply_cpu_fallback
    from deepcis_mm.engine.runner_utils import load_config
    register_all_modules()
    MMLogger.get_instance('deepcis_benchmark', log_level='WARNING')  # no per-parameter init log
    cfg = load_config(config)
    apply_cpu_fallback(cfg, force=True)  # single process on either device: BN for every model
    cfg.model.backbone.init_cfg = None
    if dets is not None:
        cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=dets)
    if proposals is not None:
        if 'rpn' not in (cfg.model.get('test_cfg') or {}):
            raise ValueError(f'{config}: --proposals needs a two-stage model (test_cfg.rpn)')
        cfg.model.test_cfg.rpn.max_per_img = proposals
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.to(device)


def measure(config: str, phase: str, size: int, warmup: int, repeats: int, device: str = 'cpu',
            batch: int = 2, seed: int = 0, dets: Optional[int] = 100, proposals: Optional[int] = None,
            fuse: bool = False) -> Dict:
    """Time ``repeats`` training iterations (``phase='train'``: forward, loss, backward, SGD step on
    ``batch`` images) or single-image inferences (``phase='infer'``) after ``warmup`` untimed ones.

    Returns seconds per run, their median, peak memory (MiB), parameter count, ``gflop`` per run
    (counted in the first warm-up run, :class:`FlopCount`; None without warm-up) and, for inference,
    the number of detections per image; ``parts``: median forward seconds per component (and of the
    whole forward pass, ``'forward'``, in training). ``dets``, ``proposals``: see :func:`build_model`.
    ``fuse``: inference with every conv+BN pair folded into one conv (mmcv ``fuse_conv_bn``).
    ``cpu_times``/``cpu_median``: CPU seconds of the process (all threads) per run, steadier than wall
    time on a shared machine.
    """
    from mmengine.optim import build_optim_wrapper
    torch.manual_seed(seed)
    model = build_model(config, device, dets, proposals)
    if fuse:
        if phase != 'infer':
            raise ValueError('measure: conv+BN fusion is for inference only')
        from mmcv.cnn import fuse_conv_bn
        model = fuse_conv_bn(model.eval())
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    timer = ForwardTimer(model, device)
    times, dets, parts, flops, cpu = [], [], [], [], []

    def counted(i):  # the first warm-up run counts FLOPs (its time is not used)
        if i == 0 and warmup > 0:
            fc = FlopCount(model, backward=phase == 'train')
            flops.append(fc)
            return fc
        return contextlib.nullcontext()

    if phase == 'train':
        data = collate(synthetic_batch(size, batch, seed))
        model.train()
        optim = build_optim_wrapper(model, dict(
            type='OptimWrapper', optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
            clip_grad=dict(max_norm=10, norm_type=2)))
        for i in range(warmup + repeats):
            sync(device)
            t0 = time.perf_counter()
            with counted(i):  # = model.train_step, with the forward (targets, losses) timed on its own
                with optim.optim_context(model):
                    losses = model._run_forward(model.data_preprocessor(data, True), mode='loss')
                sync(device)
                t_fwd = time.perf_counter() - t0
                optim.update_params(model.parse_losses(losses)[0])
                sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
                parts.append({**timer.take(), 'forward': t_fwd})
            timer.take()
    elif phase == 'infer':
        samples = synthetic_batch(size, warmup + repeats, seed)
        model.eval()
        for i, sample in enumerate(samples):
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.no_grad(), counted(i):
                out = model.test_step(collate([sample]))
            sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                dets.append(len(out[0].pred_instances))
                parts.append(timer.take())
            timer.take()
    else:
        raise ValueError(f'measure: phase must be "train" or "infer", got {phase!r}')
    return dict(phase=phase, times=times, median=statistics.median(times), peak_mib=peak_mib(device),
                params_m=sum(p.numel() for p in model.parameters()) / 1e6,
                gflop=flops[0].total / 1e9 if flops else None,
                dets=statistics.median(dets) if dets else None,
                cpu_times=cpu, cpu_median=statistics.median(cpu) if cpu else None,
                parts={name: statistics.median(p.get(name, 0.0) for p in parts)
                       for name in dict.fromkeys(n for p in parts for n in p)})


def main(argv=None) -> None:
    """Worker entry point: measure one config and phase, print one JSON line."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('config')
    p.add_argument('phase', choices=('train', 'infer'))
    p.add_argument('--size', type=int, default=512)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--device', default='cpu')
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--dets', type=int, default=100, help='detections per image at inference; 0: as configured')
    p.add_argument('--proposals', type=int, default=0, help='test-time RPN proposals per image; 0: as configured')
    p.add_argument('--fuse-conv-bn', action='store_true', help='inference with conv+BN folded (mmcv fuse_conv_bn)')
    a = p.parse_args(argv)
    res = measure(a.config, a.phase, a.size, a.warmup, a.repeats, a.device, a.batch, dets=a.dets or None,
                  proposals=a.proposals or None, fuse=a.fuse_conv_bn)
    sys.stdout.write(json.dumps(res) + '\n')


if __name__ == '__main__':
    os.environ.setdefault('PYTHONWARNINGS', 'ignore')
    main()
