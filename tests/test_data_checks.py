"""Issue 13: one intensity rule for every bit depth, strict checkpoints, checked --cfg-options and data
paths, file permissions. End-to-end training/resume checks are in test_slow.py."""
import json
import os
import os.path as osp
import shutil
import stat
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from deepcis_mm.apis import read_image
from deepcis_mm.datasets import normalize_intensity
from deepcis_mm.engine import (CheckpointMismatch, check_checkpoint_fits, check_data_paths,
                               partial_load_summary, split_cfg_options)
from deepcis_mm.utils import atomic_save, atomic_write_json, atomic_write_text
from scripts.dataset_converters.evican_release import convert_release

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = 'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py'


def _run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def _error_lines(stderr):
    return [ln for ln in stderr.splitlines() if ': error: ' in ln]


# ---- intensity normalisation ---------------------------------------------------------------------

def _model_input(cfg, path):
    """The tensor the model gets for one image file: the config's test pipeline, then the model's
    data preprocessor (mean/std)."""
    from mmcv.transforms import Compose
    from mmdet.registry import MODELS
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    data = pipeline(dict(img_path=path, img_id=0, instances=[]))
    pre = MODELS.build(cfg.model.data_preprocessor)
    return pre(dict(inputs=[data['inputs']], data_samples=[data['data_samples']]), False)['inputs']


@pytest.fixture(scope='module')
def demo_cfg():
    return Config.fromfile(osp.join(ROOT, DEMO))


@pytest.fixture(scope='module')
def picture():
    """A 70x90 8-bit gray picture using the whole range."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (70, 90)).astype(np.uint8), (5, 5), 0)
    img[0, 0], img[0, 1] = 0, 255
    return img


def test_16bit_file_and_its_8bit_rendering_give_the_same_model_input(demo_cfg, picture, tmp_path):
    """Through the config's whole test pipeline (resize included) and the model's preprocessor."""
    gray8, rgb8 = picture, np.dstack([picture, 255 - picture, picture // 2])
    low_byte = np.random.default_rng(1).integers(0, 256, picture.shape).astype(np.uint16)
    files = {
        'g8.png': gray8, 'g16.png': gray8.astype(np.uint16) * 257,
        'g16.tif': gray8.astype(np.uint16) * 256 + low_byte,  # rendering = high byte = gray8
        'g16low.tif': gray8.astype(np.uint16),  # 8-bit data in a 16-bit file
        'c8.png': rgb8, 'c16.tif': rgb8.astype(np.uint16) * 257, 'c8a.png': np.dstack([rgb8, gray8]),
        'gf.tif': gray8.astype(np.float32) / 255,
    }
    for name, arr in files.items():
        assert cv2.imwrite(str(tmp_path / name), arr)
    assert cv2.imread(str(tmp_path / 'g16.tif'), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    ref_gray, ref_rgb = (_model_input(demo_cfg, str(tmp_path / n)) for n in ('g8.png', 'c8.png'))
    # mmcv's default 8-bit read would see g16low as 0 (black) and predict used to stretch each image
    for name in ('g16.png', 'g16.tif', 'g16low.tif', 'gf.tif'):
        assert torch.equal(_model_input(demo_cfg, str(tmp_path / name)), ref_gray), name
    for name in ('c16.tif', 'c8a.png'):
        assert torch.equal(_model_input(demo_cfg, str(tmp_path / name)), ref_rgb), name
    # the predictor reads the same pixels as the pipeline's LoadImageFromFile + NormalizeIntensity
    from mmcv.transforms import Compose
    load = Compose(demo_cfg.test_dataloader.dataset.pipeline[:2])
    for name, ref in (('g16.tif', 'g8.png'), ('c16.tif', 'c8.png'), ('g16low.tif', 'g8.png'), ('gf.tif', 'g8.png')):
        a, b = read_image(str(tmp_path / name)), read_image(str(tmp_path / ref))
        piped = load(dict(img_path=str(tmp_path / name)))['img']
        assert a.dtype == np.uint8 and a.shape == (70, 90, 3), name
        assert np.array_equal(a, b) and np.array_equal(a, piped), name


def test_train_pipeline_normalises_too(demo_cfg, picture, tmp_path):
    from mmcv.transforms import Compose
    load = Compose(demo_cfg.train_dataloader.dataset.pipeline[:2])
    cv2.imwrite(str(tmp_path / 'a.png'), picture)
    cv2.imwrite(str(tmp_path / 'b.tif'), picture.astype(np.uint16) * 257)
    a, b = (load(dict(img_path=str(tmp_path / n)))['img'] for n in ('a.png', 'b.tif'))
    assert np.array_equal(a, b) and a.dtype == b.dtype == np.uint8 and a.shape == (70, 90, 3)


def test_8bit_jpeg_reaches_the_model_as_with_mmcvs_default_read(synthetic_release):
    """The demo's 8-bit gray JPEGs give the same pixels as before the rule ('color' read)."""
    import glob

    import mmcv
    paths = sorted(glob.glob(osp.join(synthetic_release, 'Images', '*', '*.jpg')))[:6]
    assert paths
    for p in paths:
        old = mmcv.imread(p, 'color')
        new = normalize_intensity(mmcv.imread(p, 'unchanged'))
        assert new.dtype == np.uint8 and np.array_equal(old, new), p


def test_normalize_rule_by_hand():
    def first(arr, dtype):
        return normalize_intensity(np.array([arr], dtype))[0, :, 0].tolist()
    assert first([0, 256, 511, 4095, 65535], np.uint16) == [0, 1, 1, 15, 255]  # high byte
    assert first([0, 100, 255], np.uint16) == [0, 100, 255]  # 8-bit data in a 16-bit file
    assert first([0.0, 0.5, 1.0], np.float32) == [0, 128, 255]
    assert first([-5.0, 2.0, 254.6], np.float32) == [0, 2, 255]
    assert first([-7, 300, 2**31 - 1], np.int32) == [0, 0, 255]
    assert normalize_intensity(np.zeros((2, 3), np.uint8)).shape == (2, 3, 3)
    with pytest.raises(ValueError, match='x.tif: unsupported image shape'):
        normalize_intensity(np.zeros((4, 4, 2), np.uint8), 'x.tif')


def test_converter_reports_bit_depths(synthetic_release, tmp_path):
    src = tmp_path / 'release'
    shutil.copytree(synthetic_release, src)
    ev = src / 'Images' / 'EVICAN_eval2019'
    names = sorted(os.listdir(ev))[:2]
    for n in names:  # two eval images as 12-bit data in 16-bit PNGs
        img = cv2.imread(str(ev / n), cv2.IMREAD_GRAYSCALE)
        os.remove(ev / n)
        cv2.imwrite(str(ev / n.replace('.jpg', '.png')), img.astype(np.uint16) * 16)
    tr = src / 'Images' / 'EVICAN_train2019'
    rgb = sorted(n for n in os.listdir(tr) if not n.endswith('Background.jpg'))[0]
    img = cv2.imread(str(tr / rgb), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 257
    os.remove(tr / rgb)  # one train image as a 16-bit RGB TIFF (PIL would read it as 8-bit RGB)
    cv2.imwrite(str(tr / rgb.replace('.jpg', '.tif')), np.dstack([img, img, img]))
    for f in list(src.glob('instances_eval2019_*.json')) + list(src.glob('instances_train2019_*.json')):
        d = json.loads(f.read_text())
        for im in d['images']:
            if im['file_name'] in names:
                im['file_name'] = im['file_name'].replace('.jpg', '.png')
            if im['file_name'] == rgb:
                im['file_name'] = rgb.replace('.jpg', '.tif')
        f.write_text(json.dumps(d))
    summary = convert_release(str(src), str(tmp_path / 'out'), verbose=False)
    n_all = sum(s['images'] for s in summary['splits'].values())
    assert summary['bit_depths'] == {'16-bit gray': 2, '16-bit RGB': 1, '8-bit gray': n_all - 3}
    assert summary['splits']['eval']['bit_depths']['16-bit gray'] == 2
    assert 255 * 16 >= summary['max_values']['16-bit gray'] > 255
    assert any('12- or 14-bit camera data' in w for w in summary['warnings'])
    md = (tmp_path / 'out' / 'summary.md').read_text()
    assert '16-bit gray: 2 (values up to' in md and f'8-bit gray: {n_all - 3}' in md


# ---- checkpoints -----------------------------------------------------------------------------------

def _demo_model(num_classes):
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    from deepcis_mm.engine import apply_cpu_fallback
    cfg = Config.fromfile(osp.join(ROOT, DEMO))
    apply_cpu_fallback(cfg, force=True)
    cfg.model.roi_head.num_classes = num_classes
    init_default_scope('mmdet')
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def ckpt_60(tmp_path_factory):
    """A demo-architecture checkpoint with 60 classes (another setting)."""
    path = str(tmp_path_factory.mktemp('ckpt60') / 'sixty.pth')
    torch.save(dict(state_dict=_demo_model(60).state_dict(), meta=dict(dataset_meta=dict(
        classes=[f'c{i}' for i in range(60)]))), path)
    return path


def test_strict_check_names_the_first_misfit_tensor(ckpt_60):
    model = _demo_model(6)
    ckpt = torch.load(ckpt_60, weights_only=False)
    with pytest.raises(CheckpointMismatch) as e:
        check_checkpoint_fits(model, ckpt, 'sixty.pth', 'demo.py')
    msg = str(e.value)
    assert '\n' not in msg and msg.startswith('checkpoint sixty.pth does not fit config demo.py: ')
    assert 'roi_head.bbox_head.0.fc_cls.weight is [61, 256] in the checkpoint but [7, 256] in the model ' \
           '(60 vs 6 classes)' in msg
    check_checkpoint_fits(model, dict(state_dict=model.state_dict()), 'a', 'b')  # fits: no error


def test_partial_load_keeps_fresh_heads_and_says_which(ckpt_60):
    model = _demo_model(6)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt = torch.load(ckpt_60, weights_only=False)
    line = partial_load_summary(model, ckpt, 'sixty.pth')
    assert '\n' not in line and line.startswith('load_from sixty.pth: re-initialised 4 module(s) (60 vs 6 classes): ')
    for stage in range(3):
        assert f'roi_head.bbox_head.{stage}.fc_cls' in line
    assert line.endswith('roi_head.mask_head.0.conv_logits')
    model.load_state_dict(ckpt['state_dict'], strict=True)  # now fits exactly
    sd = model.state_dict()
    assert torch.equal(sd['roi_head.bbox_head.0.fc_cls.weight'], fresh['roi_head.bbox_head.0.fc_cls.weight'])
    src = torch.load(ckpt_60, weights_only=False)['state_dict']
    assert torch.equal(sd['backbone.stem.0.weight'], src['backbone.stem.0.weight'])


def _data_options(prepared):
    return [f'test_dataloader.dataset.data_root={prepared}/',
            f'test_evaluator.ann_file={prepared}/annotations/instances_eval.json',
            'model.roi_head.num_classes=6', 'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False']


def test_tools_test_rejects_a_checkpoint_of_another_class_count(prepared, ckpt_60, tmp_path):
    work = tmp_path / 'work'
    res = _run('tools/test.py', DEMO, ckpt_60, '--work-dir', str(work), '--cfg-options', *_data_options(prepared))
    assert res.returncode == 2, res.stderr[-2000:]
    (line,) = _error_lines(res.stderr)
    assert line.startswith(f'test: error: {DEMO}: CheckpointMismatch: checkpoint {ckpt_60} does not fit config '
                           f'{DEMO}: roi_head.bbox_head.0.fc_cls.weight is [61, 256]')
    assert '(60 vs 6 classes)' in line and 'size mismatch' not in res.stderr + res.stdout
    assert not work.exists()  # nothing written


def test_tools_test_rejects_a_checkpoint_with_the_classes_in_another_order(prepared, tmp_path):
    with open(osp.join(prepared, 'annotations', 'instances_eval.json')) as f:
        classes = [c['name'] for c in json.load(f)['categories']]
    ckpt = str(tmp_path / 'shuffled.pth')
    torch.save(dict(state_dict=_demo_model(6).state_dict(),
                    meta=dict(dataset_meta=dict(classes=classes[2:] + classes[:2]))), ckpt)
    work = tmp_path / 'work'
    res = _run('tools/test.py', DEMO, ckpt, '--work-dir', str(work), '--cfg-options', *_data_options(prepared))
    assert res.returncode == 2, res.stderr[-2000:]
    (line,) = _error_lines(res.stderr)
    assert (f'CheckpointMismatch: checkpoint {ckpt} was trained on other classes than the data set: label 0 is '
            f'{classes[2]!r} in the checkpoint but {classes[0]!r} in the data') in line
    assert not (work / 'ap_tables').exists()


# ---- --cfg-options and data paths -------------------------------------------------------------------

@pytest.mark.parametrize('key,closest', [('train_cfg.max_iter', 'train_cfg.max_iters'),
                                         ('randomnes.seed', 'randomness.seed'),
                                         ('model.roi_head.num_clases', 'model.roi_head.num_classes')])
def test_unknown_cfg_option_names_the_closest_key(demo_cfg, key, closest):
    with pytest.raises(KeyError) as e:
        split_cfg_options(demo_cfg, {key: 1})
    assert f'--cfg-options {key}: no such key in the config (did you mean {closest}?' in str(e.value)


def test_cfg_options_existing_list_and_new_keys(demo_cfg):
    opts = {'train_cfg.max_iters': 3, 'custom_hooks.1.type': 'X', '+model.test_cfg.rcnn.brand_new': 1,
            'randomness.deterministic': True}
    assert split_cfg_options(demo_cfg, opts) == {'train_cfg.max_iters': 3, 'custom_hooks.1.type': 'X',
                                                 'model.test_cfg.rcnn.brand_new': 1,
                                                 'randomness.deterministic': True}
    with pytest.raises(KeyError, match='custom_hooks.7.type: no such key'):
        split_cfg_options(demo_cfg, {'custom_hooks.7.type': 'X'})


def test_train_with_a_typo_is_one_line_before_anything_runs(tmp_path):
    for opt, hint in (('train_cfg.max_iter=10', 'did you mean train_cfg.max_iters?'),
                      ('randomnes.seed=1', 'did you mean randomness.seed?')):
        res = _run('tools/train.py', DEMO, '--work-dir', str(tmp_path / 'w'), '--cfg-options', opt)
        assert res.returncode == 2
        (line,) = _error_lines(res.stderr)
        assert line.startswith(f'train: error: {DEMO}: ConfigKeyError: --cfg-options {opt.split("=")[0]}')
        assert hint in line and 'Traceback' not in res.stderr
    assert not (tmp_path / 'w').exists()


def test_missing_data_paths_are_named(prepared, tmp_path, demo_cfg):
    cfg = demo_cfg.copy()
    cfg.merge_from_dict({'test_dataloader.dataset.data_root': str(tmp_path / 'nowhere') + '/'})
    with pytest.raises(FileNotFoundError, match=r'test_dataloader.dataset.data_root: folder .*nowhere/ does not exist'):
        check_data_paths(cfg, ['test'])
    cfg.merge_from_dict({'test_dataloader.dataset.data_root': f'{prepared}/',
                         'test_evaluator.ann_file': f'{prepared}/annotations/instances_evl.json'})
    with pytest.raises(FileNotFoundError, match=r'test_evaluator.ann_file: file .*instances_evl.json does not exist'):
        check_data_paths(cfg, ['test'])
    # a forgotten evaluator ann_file pointing at another data set's eval file
    cfg.merge_from_dict({'test_evaluator.ann_file': f'{prepared}/annotations/instances_train.json'})
    with pytest.raises(ValueError, match=r'test_evaluator.ann_file: .*instances_train.json does not list the '
                                         r'images of test_dataloader\'s .*instances_eval.json'):
        check_data_paths(cfg, ['test'])
    cfg.merge_from_dict({'test_evaluator.ann_file': None})
    with pytest.raises(ValueError, match=r'test_evaluator.ann_file: not set \(DifficultyCocoMetric needs'):
        check_data_paths(cfg, ['test'])
    cfg.merge_from_dict({'test_evaluator.ann_file': f'{prepared}/annotations/instances_eval.json'})
    check_data_paths(cfg, ['test'])


def test_tools_test_missing_evaluator_file_is_one_line(prepared, tmp_path):
    opts = _data_options(prepared)
    opts[1] = f'test_evaluator.ann_file={tmp_path}/gone.json'
    res = _run('tools/test.py', DEMO, __file__, '--work-dir', str(tmp_path / 'w'), '--cfg-options', *opts)
    assert res.returncode == 2
    (line,) = _error_lines(res.stderr)
    assert f'test_evaluator.ann_file: file {tmp_path}/gone.json does not exist' in line


# ---- file permissions ------------------------------------------------------------------------------

@pytest.mark.parametrize('umask,mode', [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(str(tmp_path / 'a.txt'), 'x')
        atomic_write_json(str(tmp_path / 'b.json'), {'a': 1})
        atomic_save(str(tmp_path / 'c.png'), lambda t: cv2.imwrite(t, np.zeros((4, 4), np.uint8)))
        with open(tmp_path / 'plain.txt', 'w') as f:
            f.write('x')
    finally:
        os.umask(old)
    for name in ('a.txt', 'b.json', 'c.png', 'plain.txt'):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode, name
    assert sorted(os.listdir(tmp_path)) == ['a.txt', 'b.json', 'c.png', 'plain.txt']  # no temp files


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    atomic_write_text(str(tmp_path / 'a.txt'), 'old')

    def boom(tmp):
        with open(tmp, 'w') as f:
            f.write('half')
        raise RuntimeError('disk full')
    with pytest.raises(RuntimeError):
        atomic_save(str(tmp_path / 'a.txt'), boom)
    assert (tmp_path / 'a.txt').read_text() == 'old' and os.listdir(tmp_path) == ['a.txt']


# ---- no warnings a user cannot act on ---------------------------------------------------------------

def test_config_loading_imports_no_pkg_resources():
    """mmengine 0.10.7 imports pkg_resources (3 deprecation warnings per command) when a config names a
    mmdet:: base; deepcis_mm.compat routes it to importlib.metadata."""
    code = ('import sys, deepcis_mm; from mmengine.config import Config; '
            f'Config.fromfile({DEMO!r}); print("pkg_resources" in sys.modules)')
    res = _run('-c', code)
    assert res.returncode == 0 and res.stdout.strip() == 'False' and res.stderr == '', res.stderr


def test_predictor_loads_classes_from_the_checkpoint_without_coco_fallback(tmp_path, recwarn):
    from deepcis_mm.apis import Predictor
    path = str(tmp_path / 'eight.pth')
    names = ['HeLa cell', 'HeLa nucleus', 'MCF-7 cell', 'MCF-7 nucleus', 'A cell', 'A nucleus', 'B cell', 'B nucleus']
    torch.save(dict(state_dict=_demo_model(8).state_dict(), meta=dict(dataset_meta=dict(classes=names))), path)
    predictor = Predictor(osp.join(ROOT, DEMO), path)
    assert predictor.classes == names and predictor.model.dataset_meta['classes'] == names
    assert not [w for w in recwarn if 'COCO classes' in str(w.message)]


def test_train_rejects_validation_data_with_the_classes_in_another_order(prepared, tmp_path):
    """Each annotation file sets its own label order: validation scored in another order than training
    would pair every class with another's ground truth, so training refuses to start."""
    with open(osp.join(prepared, 'annotations', 'instances_eval.json')) as f:
        coco = json.load(f)
    classes = [c['name'] for c in coco['categories']]
    coco['categories'] = coco['categories'][::-1]
    val_ann = str(tmp_path / 'eval_reversed.json')
    with open(val_ann, 'w') as f:
        json.dump(coco, f)
    work = tmp_path / 'work'
    res = _run('tools/train.py', DEMO, '--work-dir', str(work), '--cfg-options',
               f'train_dataloader.dataset.data_root={prepared}/', f'val_dataloader.dataset.data_root={prepared}/',
               f'val_dataloader.dataset.ann_file={val_ann}', f'val_evaluator.ann_file={val_ann}',
               'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
               'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
               'model.roi_head.num_classes=6', 'train_cfg.max_iters=2')
    assert res.returncode == 2, res.stderr[-2000:]
    (line,) = _error_lines(res.stderr)
    assert (f'labels of training and validation data differ: label 0 is {classes[0]!r} in the training data '
            f'but {classes[-1]!r} in the validation data (same {len(classes)} classes in another order?)') in line
    assert not list(work.glob('*.pth'))  # stopped before the first iteration


def test_evican_dataset_applies_the_intensity_rule_to_any_pipeline(prepared, tmp_path):
    """A config on an upstream pipeline (plain LoadImageFromFile, as the RTMDet/CondInst baselines)
    still reads a 16-bit file holding 8-bit values as training does, not as black."""
    from deepcis_mm.datasets import EvicanDataset
    ds = EvicanDataset(data_root=prepared, ann_file='annotations/instances_eval.json',
                       data_prefix=dict(img='images/eval/'), test_mode=True,
                       pipeline=[dict(type='LoadImageFromFile')])
    names = [type(t).__name__ for t in ds.pipeline.transforms]
    assert names == ['LoadImageFromFile', 'NormalizeIntensity']
    gray = (np.arange(40 * 30).reshape(30, 40) % 200 + 20).astype(np.uint8)
    path = str(tmp_path / 'sixteen.png')
    cv2.imwrite(path, gray.astype(np.uint16))  # 8-bit values in a 16-bit file
    img = ds.pipeline(dict(img_path=path))['img']
    assert img.dtype == np.uint8 and np.array_equal(img[..., 0], gray)
    again = EvicanDataset(data_root=prepared, ann_file='annotations/instances_eval.json',
                          data_prefix=dict(img='images/eval/'), test_mode=True,
                          pipeline=[dict(type='LoadImageFromFile', color_type='unchanged'),
                                    dict(type='NormalizeIntensity')])
    assert [type(t).__name__ for t in again.pipeline.transforms] == names  # not added twice
