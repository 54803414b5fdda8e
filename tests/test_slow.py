"""End-to-end runs through tools/ (slow: `make test-slow`): train + resume, 2-process DDP, mim."""
import json
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = 'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py'
pytestmark = pytest.mark.slow


def _options(prepared, max_iters, extra=()):
    return ['--cfg-options', f'train_cfg.max_iters={max_iters}', 'train_cfg.val_interval=1000',
            f'train_dataloader.dataset.data_root={prepared}/', f'val_dataloader.dataset.data_root={prepared}/',
            f'test_dataloader.dataset.data_root={prepared}/',
            f'val_evaluator.ann_file={prepared}/annotations/instances_eval.json',
            f'test_evaluator.ann_file={prepared}/annotations/instances_eval.json',
            'model.roi_head.num_classes=6', 'default_hooks.logger.interval=1',
            'default_hooks.checkpoint.interval=2', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
            'val_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False', *extra]


def _run(cmd, **kwargs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, osp.join(ROOT, 'tests')]), OMP_NUM_THREADS='1')
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=900, **kwargs)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def test_train_then_resume_continues_at_next_iteration(prepared, tmp_path):
    work = str(tmp_path / 'work')
    _run([sys.executable, 'tools/train.py', DEMO, '--work-dir', work, *_options(prepared, 4)])
    saved = torch.load(osp.join(work, 'iter_4.pth'), weights_only=False)
    log = _run([sys.executable, 'tools/train.py', DEMO, '--work-dir', work, '--resume',
                *_options(prepared, 6)])
    assert 'resumed epoch: 0, iter: 4' in log
    iters = [int(m) for m in re.findall(r'Iter\(train\) \[\s*(\d+)/6\]', log)]
    assert iters == [5, 6]
    resumed = torch.load(osp.join(work, 'iter_6.pth'), weights_only=False)
    assert resumed['meta']['iter'] == 6
    # the optimizer and scheduler went on from the saved state: warmup continued, same momentum slots
    assert resumed['optimizer']['param_groups'][0]['lr'] > saved['optimizer']['param_groups'][0]['lr']
    assert set(resumed['optimizer']['state']) == set(saved['optimizer']['state'])


@pytest.mark.parametrize('workers', [0, 1])
def test_resume_is_bit_exact(prepared, tmp_path, workers):
    """6 iterations uninterrupted == killed right after the iteration-3 checkpoint + --resume: every
    parameter and buffer equal (torch.equal). num_workers=0 puts augmentation in the training process
    (its own generator), 1 in a worker; the RPN/RoI samplers' states come from the checkpoint."""
    opts = ['default_hooks.checkpoint.interval=3']
    if workers:
        opts += [f'train_dataloader.num_workers={workers}', 'train_dataloader.persistent_workers=True']

    def train(work, *extra, resume=()):
        return [sys.executable, 'tools/train.py', DEMO, '--work-dir', str(work), *resume,
                *_options(prepared, 6, [*opts, *extra])]

    full, part = tmp_path / 'full', tmp_path / 'part'
    # the uninterrupted run; --resume on a work_dir without checkpoint says so and starts fresh
    log = _run(train(full, resume=['--resume']))
    assert f'train: --resume: no checkpoint in {full} (no last_checkpoint file); starting fresh' in log
    assert 'Auto resumed' not in log
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, osp.join(ROOT, 'tests')]), OMP_NUM_THREADS='1')
    killed = subprocess.run(train(part, "custom_imports.imports=['deepcis_mm','stop_probe']",
                                  'custom_hooks.1.type=StopAfterIterHook'),
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert killed.returncode == 17, killed.stderr[-3000:]
    assert osp.isfile(part / 'iter_3.pth') and not osp.exists(part / 'iter_6.pth')
    log = _run(train(part, resume=['--resume']))
    assert 'resumed epoch: 0, iter: 3' in log and 'not bit-exactly' not in log
    a = torch.load(full / 'iter_6.pth', weights_only=False)['state_dict']
    b = torch.load(part / 'iter_6.pth', weights_only=False)['state_dict']
    assert list(a) == list(b)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f'{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}'


def test_dist_train_two_cpu_processes_train_one_ddp_model(prepared, tmp_path):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    work = str(tmp_path / 'dist')
    env = dict(os.environ, PORT=str(port), PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join([ROOT, osp.join(ROOT, 'tests')]), OMP_NUM_THREADS='1')
    res = subprocess.run(['bash', 'tools/dist_train.sh', DEMO, '2', '--work-dir', work,
                          *_options(prepared, 3, ["custom_imports.imports=['deepcis_mm','dist_probe']",
                                                  'custom_hooks.1.type=DistProbeHook'])],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ranks = [json.load(open(osp.join(work, f'rank{r}.json'))) for r in (0, 1)]
    assert [r['rank'] for r in ranks] == [0, 1]
    assert all(r['world_size'] == 2 and r['iter'] == 3 for r in ranks)
    assert all(r['wrapper'] == 'MMDistributedDataParallel' for r in ranks)
    # DDP keeps the replicas identical: both ranks hold the same trained parameters
    assert ranks[0]['checksum'] == pytest.approx(ranks[1]['checksum'], rel=1e-6)


def test_mim_train_finds_our_config_and_tools(prepared, tmp_path):
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    work = str(tmp_path / 'mim')
    out = _run([mim, 'train', 'deepcis_mm', DEMO, '--work-dir', work, *_options(prepared, 2)])
    assert osp.isfile(osp.join(work, 'iter_2.pth')), out[-2000:]


def test_load_from_another_class_count_reports_reinitialised_heads(prepared, tmp_path):
    """Partial loading stays for training (COCO initialisation): one summary line, no per-tensor warnings."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from deepcis_mm.engine import apply_cpu_fallback
    cfg = Config.fromfile(osp.join(ROOT, DEMO))
    apply_cpu_fallback(cfg, force=True)
    cfg.model.roi_head.num_classes = 60
    init_default_scope('mmdet')
    ckpt = str(tmp_path / 'sixty.pth')
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict()), ckpt)
    log = _run([sys.executable, 'tools/train.py', DEMO, '--work-dir', str(tmp_path / 'w'),
                *_options(prepared, 1, [f'load_from={ckpt}'])])
    lines = [ln for ln in log.splitlines() if 're-initialised' in ln]
    assert len(lines) == 1 and lines[0].endswith(
        f'load_from {ckpt}: re-initialised 4 module(s) (60 vs 6 classes): roi_head.bbox_head.0.fc_cls, '
        'roi_head.bbox_head.1.fc_cls, roi_head.bbox_head.2.fc_cls, roi_head.mask_head.0.conv_logits')
    assert 'size mismatch' not in log and 'missing keys' not in log
    assert osp.isfile(tmp_path / 'w' / 'iter_1.pth')


def test_16bit_release_trains_exactly_like_its_8bit_original(synthetic_release, prepared, tmp_path):
    """The release as 16-bit PNGs -> converter -> 4 training iterations: the same weights, tensor for
    tensor, as training on the 8-bit JPEGs. Half the files hold 8-bit * 257, half the 8-bit values
    themselves (mmcv's default read, used before, turned those black)."""
    import glob
    import shutil

    import cv2
    import numpy as np

    from scripts.dataset_converters.evican_release import convert_release
    src = tmp_path / 'release16'
    shutil.copytree(synthetic_release, src)
    for i, p in enumerate(sorted(glob.glob(str(src / 'Images' / '*' / '*.jpg')))):
        cv2.imwrite(p[:-4] + '.png', cv2.imread(p, cv2.IMREAD_UNCHANGED).astype(np.uint16) * (257 if i % 2 else 1))
        os.remove(p)
    for f in glob.glob(str(src / '*.json')):
        with open(f) as fh:
            d = json.load(fh)
        for im in d['images']:
            im['file_name'] = im['file_name'][:-4] + '.png'
        with open(f, 'w') as fh:
            json.dump(d, fh)
    prepared16 = str(tmp_path / 'prepared16')
    summary = convert_release(str(src), prepared16, verbose=False)
    assert list(summary['bit_depths']) == ['16-bit gray']
    weights = []
    for data, work in ((prepared, tmp_path / 'w8'), (prepared16, tmp_path / 'w16')):
        _run([sys.executable, 'tools/train.py', DEMO, '--work-dir', str(work), *_options(data, 4)])
        weights.append(torch.load(work / 'iter_4.pth', weights_only=False)['state_dict'])
    differ = [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])]
    assert not differ, f'{len(differ)} of {len(weights[0])} tensors differ, e.g. {differ[:3]}'
