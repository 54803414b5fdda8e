"""Training / inference speed and peak memory of one detector config at a fixed input size.

:func:`run_speed` measures each model in its own subprocess (``python -m scripts.analysis_tools.benchmarks.speed``)
so that the peak memory of one model does not hide another's (CPU: the process's peak resident set;
GPU: ``torch.cuda.max_memory_allocated``). Every model sees the same synthetic EVICAN-like batch.
"""
import argparse
import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch

from . import worker_env

# (key, label, config) of the models compared by `scripts/analysis_tools/benchmark.py speed`; ratios are against 'b'
SPEED_MODELS = (
    ('a', 'DeepCIS setting 3 (S200-DCNv2, 60 cl.)',
     'configs/deepcis/deepcis_s200-dcnv2_fpn_3.5k_evican60-cell-nucleus.py'),
    ('b', 'stock Cascade Mask R-CNN, same backbone',
     'configs/baselines/cascade-mask-rcnn_s200-dcnv2_fpn_3.5k_evican60-cell-nucleus.py'),
    ('c', 'Mask R-CNN R50-FPN',
     'configs/baselines/mask-rcnn_r50_fpn_3.5k_evican60-cell-nucleus.py'),
    ('d', 'DeepCIS CPU demo (S14-DCNv2)',
     'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py'),
)
REFERENCE_KEY = 'b'
N_CULTURES = 4  # labels 0..7: valid for every compared model (the demo has 8 classes)


def synthetic_batch(size: int, n_images: int, seed: int = 0) -> List[dict]:
    """``n_images`` packed samples of ``size`` x ``size`` px (synthetic EVICAN images of different
    cultures, cells and nuclei with boxes and polygon masks), as the dataloader would give them."""
    from mmcv.transforms import Compose

    from scripts.dataset_converters.synthetic_evican import CULTURES, culture_morphology, render_image
    pipeline = Compose([dict(type='mmdet.LoadAnnotations', with_bbox=True, with_mask=True),
                        dict(type='mmdet.PackDetInputs')])
    samples = []
    for i in range(n_images):
        c = i % N_CULTURES
        rng = np.random.default_rng((seed, i))
        img, objects = render_image(rng, size, size, culture_morphology(c), level=1)
        instances = []
        for cell, nuc, _ in objects:
            for kind, poly in ((0, cell), (1, nuc)):
                if poly is None:
                    continue
                x0, y0 = poly.min(0)
                x1, y1 = poly.max(0)
                instances.append(dict(bbox=[float(x0), float(y0), float(x1), float(y1)],
                                      bbox_label=2 * c + kind, ignore_flag=0,
                                      mask=[[float(v) for v in poly.ravel()]]))
        results = dict(img=cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), img_shape=(size, size),
                       ori_shape=(size, size), scale_factor=(1.0, 1.0), img_id=i,
                       img_path=f'{CULTURES[c]}_{i}.jpg', instances=instances)
        samples.append(pipeline(results))
    return samples


def _collate(samples: List[dict]) -> dict:
    return dict(inputs=[s['inputs'] for s in samples], data_samples=[s['data_samples'] for s in samples])


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


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _peak_mib(device: str) -> float:
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# components timed by forward hooks (seconds per run, forward only); the rest of a run is backward and
# optimizer step (training) or proposal/detection post-processing and mask pasting (inference)
COMPONENTS = (('backbone', 'backbone'), ('neck', 'neck'), ('rpn_head', 'RPN head'),
              ('roi_head.bbox_roi_extractor', 'box RoIAlign'), ('roi_head.bbox_head', 'box heads'),
              ('roi_head.mask_roi_extractor', 'mask RoIAlign'), ('roi_head.mask_head', 'mask heads'))


class ForwardTimer:
    """Accumulates the forward time of the model's components (:data:`COMPONENTS`) via hooks."""

    def __init__(self, model, device: str):
        self.device, self.total, self._start = device, {}, {}
        for path, name in COMPONENTS:
            module = model
            for attr in path.split('.'):
                module = getattr(module, attr, None)
            if module is None or (path == 'roi_head.mask_roi_extractor' and module is
                                  getattr(model.roi_head, 'bbox_roi_extractor', None)):
                continue  # absent, or the mask branch shares the box RoIAlign module
            for m in module if isinstance(module, torch.nn.ModuleList) else [module]:
                m.register_forward_pre_hook(self._pre(name, id(m)))
                m.register_forward_hook(self._post(name, id(m)))

    def _pre(self, name, key):
        def hook(module, inputs):
            _sync(self.device)
            self._start[key] = time.perf_counter()
        return hook

    def _post(self, name, key):
        def hook(module, inputs, output):
            _sync(self.device)
            self.total[name] = self.total.get(name, 0.0) + time.perf_counter() - self._start.pop(key)
        return hook

    def take(self) -> Dict[str, float]:
        out, self.total = self.total, {}
        return out


class FlopCount:
    """FLOPs of the code run inside ``with FlopCount(model, backward) as fc`` (then ``fc.total``):
    torch's ``FlopCounterMode`` (matmuls and convolutions, forward and backward) plus mmcv's DCNv2, a
    compiled op torch cannot see, counted by hooks as a convolution (backward = 2x forward).
    RoIAlign, NMS and element-wise ops are not counted (small next to the convolutions)."""

    def __init__(self, model, backward: bool):
        from mmcv.ops import ModulatedDeformConv2d
        self.dcn = [m for m in model.modules() if isinstance(m, ModulatedDeformConv2d)]
        self.backward, self.dcn_flops, self._hooks, self.total = backward, 0, [], None

    def _hook(self, module, inputs, output):
        kh, kw = module.kernel_size
        self.dcn_flops += 2 * output.numel() * module.in_channels // module.groups * kh * kw

    def __enter__(self):
        from torch.utils.flop_counter import FlopCounterMode
        self._hooks = [m.register_forward_hook(self._hook) for m in self.dcn]
        self._mode = FlopCounterMode(display=False)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        for h in self._hooks:
            h.remove()
        self.total = self._mode.get_total_flops() + self.dcn_flops * (3 if self.backward else 1)


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
        data = _collate(synthetic_batch(size, batch, seed))
        model.train()
        optim = build_optim_wrapper(model, dict(
            type='OptimWrapper', optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
            clip_grad=dict(max_norm=10, norm_type=2)))
        for i in range(warmup + repeats):
            _sync(device)
            t0 = time.perf_counter()
            with counted(i):  # = model.train_step, with the forward (targets, losses) timed on its own
                with optim.optim_context(model):
                    losses = model._run_forward(model.data_preprocessor(data, True), mode='loss')
                _sync(device)
                t_fwd = time.perf_counter() - t0
                optim.update_params(model.parse_losses(losses)[0])
                _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
                parts.append({**timer.take(), 'forward': t_fwd})
            timer.take()
    elif phase == 'infer':
        samples = synthetic_batch(size, warmup + repeats, seed)
        model.eval()
        for i, sample in enumerate(samples):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.no_grad(), counted(i):
                out = model.test_step(_collate([sample]))
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                dets.append(len(out[0].pred_instances))
                parts.append(timer.take())
            timer.take()
    else:
        raise ValueError(f'measure: phase must be "train" or "infer", got {phase!r}')
    return dict(phase=phase, times=times, median=statistics.median(times), peak_mib=_peak_mib(device),
                params_m=sum(p.numel() for p in model.parameters()) / 1e6,
                gflop=flops[0].total / 1e9 if flops else None,
                dets=statistics.median(dets) if dets else None,
                cpu_times=cpu, cpu_median=statistics.median(cpu) if cpu else None,
                parts={name: statistics.median(p.get(name, 0.0) for p in parts)
                       for name in dict.fromkeys(n for p in parts for n in p)})


def speed_devices(spec: str, gpu_available: Optional[bool] = None) -> List[str]:
    """Devices named by ``--device``: ``auto`` = the CPU, plus ``cuda`` where torch sees a GPU; else a
    comma list such as ``cpu,cuda:1``. ValueError (one line) for an unknown name or a GPU torch does
    not see."""
    gpu = torch.cuda.is_available() if gpu_available is None else gpu_available
    if spec == 'auto':
        return ['cpu'] + (['cuda'] if gpu else [])
    devices = list(dict.fromkeys(d.strip() for d in spec.split(',') if d.strip()))  # each once
    if not devices:
        raise ValueError('--device is empty')
    for d in devices:
        if not (d == 'cpu' or re.fullmatch(r'cuda(:\d+)?', d)):
            raise ValueError(f'--device {d} unknown; use auto, cpu, cuda, cuda:N or a comma list')
        if d.startswith('cuda') and not gpu:
            raise ValueError(f'--device {d} but torch sees no GPU')
    return devices


def _measure_in_subprocess(config: str, phase: str, args: dict, log) -> Dict:
    cmd = [sys.executable, '-m', 'scripts.analysis_tools.benchmarks.speed', config, phase] + \
        [f'--{k}={v}' for k, v in args.items()]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=worker_env())
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ['(no output)']
        raise RuntimeError(f'speed benchmark of {config} ({phase}) failed: {tail[0]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_speed(models: Sequence[tuple] = SPEED_MODELS, size: int = 512, warmup: int = 1, repeats: int = 3,
              device: str = 'cpu', batch: int = 2, infer_repeats: Optional[int] = None, dets: int = 100,
              log=print) -> List[Dict]:
    """Measure every model (train then inference, each in a fresh process); one row per model."""
    rows = []
    for key, label, config in models:
        row = dict(key=key, label=label, config=config)
        for phase, n in (('train', repeats), ('infer', infer_repeats or repeats)):
            t0 = time.time()
            res = _measure_in_subprocess(config, phase, dict(size=size, warmup=warmup, repeats=n,
                                                             device=device, batch=batch, dets=dets), log)
            row[phase] = res
            log(f'[{key}] {phase}: median {res["median"]:.3f} s of {[round(t, 3) for t in res["times"]]}, '
                f'peak {res["peak_mib"]:.0f} MiB ({time.time() - t0:.0f} s)')
        rows.append(row)
    ref = next((r for r in rows if r['key'] == REFERENCE_KEY), None)
    for row in rows:
        for phase in ('train', 'infer'):
            row[phase]['ratio'] = row[phase]['median'] / ref[phase]['median'] if ref else None
    return rows


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
