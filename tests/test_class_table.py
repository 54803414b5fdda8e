"""Class meaning has one source: dataset_meta (dataset -> hook/checkpoint -> model, predictor, consensus)."""
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config

from deepcis_mm.datasets import class_table
from deepcis_mm.engine import DatasetMetaHook, apply_cpu_fallback, set_dataset_meta

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py')


def test_class_table_reads_the_table_not_the_names():
    meta = dict(classes=('x', 'y'), cultures=('HeLa', 'HeLa'), kinds=('cell', 'nucleus'))
    assert class_table(meta) == (('HeLa', 'HeLa'), ('cell', 'nucleus'))  # names 'x'/'y' never parsed
    # EVICAN2: classes without a culture
    assert class_table(dict(classes=('cell', 'nucleus'), cultures=(None, None),
                            kinds=('cell', 'nucleus'))) == ((None, None), ('cell', 'nucleus'))


def test_class_table_of_names_only_parses_them_once_here():
    assert class_table(dict(classes=['MCF-7 nucleus', 'HeLa_Cell'])) == (('MCF-7', 'HeLa'), ('nucleus', 'cell'))


@pytest.mark.parametrize('meta,names', [
    (dict(classes=['HeLa cell', 'background', 'junk']), ["'background'", "'junk'"]),
    (dict(classes=('a', 'b'), cultures=('A', 'B'), kinds=('cell', 'membrane')), ["'b'"]),
])
def test_class_table_names_the_unknown_classes(meta, names):
    with pytest.raises(ValueError) as e:
        class_table(meta)
    msg = str(e.value)
    assert all(n in msg for n in names) and "'HeLa cell'" not in msg and "'a'" not in msg


def test_class_table_rejects_missing_classes_and_ragged_tables():
    with pytest.raises(ValueError, match='no "classes"'):
        class_table({})
    with pytest.raises(ValueError, match='2 classes but 1 cultures'):
        class_table(dict(classes=('a', 'b'), cultures=('A',), kinds=('cell', 'cell')))


def _demo_model():
    from mmdet.registry import MODELS
    cfg = Config.fromfile(DEMO)
    apply_cpu_fallback(cfg, force=True)
    cfg.model.backbone.init_cfg = None
    return MODELS.build(cfg.model)


def test_dataset_meta_hook_sets_the_model_and_its_head_from_each_loader():
    model = _demo_model()
    metas = {split: dict(classes=(f'{split} cell',), cultures=(split,), kinds=('cell',))
             for split in ('train', 'val', 'test')}
    loaders = {f'{split}_dataloader': SimpleNamespace(dataset=SimpleNamespace(metainfo=meta))
               for split, meta in metas.items()}
    runner = SimpleNamespace(model=SimpleNamespace(module=model), **loaders)  # a DDP-wrapped model
    hook = DatasetMetaHook()
    for split, call in (('train', hook.before_train), ('val', hook.before_val), ('test', hook.before_test)):
        call(runner)
        assert model.dataset_meta == metas[split]
        assert model.roi_head.dataset_meta is model.dataset_meta  # the head is given the same table


def test_build_runner_adds_the_dataset_meta_hook(prepared, tmp_path):
    from deepcis_mm.engine import build_runner, load_config
    cfg = load_config(DEMO, dict(train_dataloader=dict(dataset=dict(data_root=prepared + '/')),
                                 val_dataloader=dict(dataset=dict(data_root=prepared + '/')),
                                 test_dataloader=dict(dataset=dict(data_root=prepared + '/'))),
                      work_dir=str(tmp_path))
    cfg.model.backbone.init_cfg = None
    runner = build_runner(cfg)
    assert 'DatasetMetaHook' in [type(h).__name__ for h in runner.hooks]


def _checkpoint(tmp_path, meta):
    path = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=_demo_model().state_dict(), meta=dict(dataset_meta=meta)), path)
    return path


def test_predictor_takes_the_checkpoints_table_without_reparsing(tmp_path):
    from deepcis_mm.apis import Predictor
    classes = [f'class {i}' for i in range(8)]  # names that do not parse: the table decides
    cultures = ('A', 'A', 'B', 'B', 'C', 'C', 'D', 'D')
    kinds = ('cell', 'nucleus') * 4
    predictor = Predictor(DEMO, _checkpoint(tmp_path, dict(classes=classes, cultures=cultures, kinds=kinds)))
    assert predictor.cultures == list(cultures) and predictor.kinds == list(kinds)
    assert predictor.model.dataset_meta['classes'] == classes
    assert predictor.model.roi_head.dataset_meta['cultures'] == cultures


def test_predictor_names_a_class_of_unknown_kind_instead_of_calling_it_a_cell(tmp_path):
    from deepcis_mm.apis import InputError, Predictor
    classes = ['HeLa cell', 'HeLa nucleus', 'debris', 'MCF-7 nucleus', 'A cell', 'A nucleus', 'B cell', 'B nucleus']
    ckpt = _checkpoint(tmp_path, dict(classes=classes))
    with pytest.raises(InputError) as e:
        Predictor(DEMO, ckpt)
    assert str(e.value).startswith(ckpt) and "'debris'" in str(e.value)
