"""deepcis compare on hand-made ap_tables folders."""
import csv
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from deepcis_mm.evaluation.compare_runs import CompareError, collect_runs, compare_runs, comparison_rows

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
LEVELS = ('1', '2', '3', 'all')


def make_tables(per_class_ap, agnostic=0.5, culture=0.75, max_dets=1000):
    """tables as DifficultyCocoMetric writes them; ``per_class_ap``: {class: {level: AP or None}}
    (the same for bbox and segm except segm = bbox / 2); level means over the classes with a value."""
    tables = dict(classes=list(per_class_ap))
    for iou, scale in (('bbox', 1.0), ('segm', 0.5)):
        rows, levels = [], {}
        for lvl in LEVELS:
            vals = []
            for n, (c, aps) in enumerate(per_class_ap.items()):
                v = aps.get(lvl)
                v = None if v is None else v * scale
                rows.append(dict(cls=c, category_id=n + 1, culture=c.split()[0], kind=c.split()[1], level=lvl,
                                 mAP=v))
                if v is not None:
                    vals.append(v)
            levels[lvl] = dict(mAP=sum(vals) / len(vals) if vals else None)
        tables[iou] = dict(levels=levels, per_class=rows, max_dets=max_dets,
                           agnostic={lvl: dict(mAP=agnostic * scale) for lvl in LEVELS})
    tables['culture'] = dict(cultures=[], levels={lvl: dict(accuracy=culture, n_matched=10) for lvl in LEVELS})
    return tables


def write_run(work_dir, folder, tables, run=None):
    out = osp.join(work_dir, 'ap_tables', folder)
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, 'metrics.json'), 'w') as f:
        json.dump(dict(run=run or {}, metrics={}, tables=tables), f)
    return out


AB = {'HeLa cell': {'1': 0.6, '2': 0.4, '3': None, 'all': 0.5},
      'HeLa nucleus': {'1': 0.8, '2': 0.6, '3': None, 'all': 0.7}}


@pytest.fixture
def runs(tmp_path):
    a, b = str(tmp_path / 'paper'), str(tmp_path / 'all-levels')
    write_run(a, 'iter_450', make_tables(AB), dict(mode='val', iteration=450, config_name='demo'))
    # a newer test table wins over the val table; an older test table loses
    write_run(a, 'test_iter_450_20260101_120000', make_tables(AB, agnostic=0.1),
              dict(mode='test', iteration=None, config_name='demo'))
    write_run(a, 'test_iter_450_20260102_120000', make_tables(AB, agnostic=0.6),
              dict(mode='test', iteration=450, config_name='demo'))
    b_aps = {c: {k: (None if v is None else v / 2) for k, v in aps.items()} for c, aps in AB.items()}
    write_run(b, 'iter_200', make_tables(b_aps, agnostic=0.3, culture=0.5))
    with open(osp.join(b, 'demo_all.py'), 'w') as f:  # the config mmengine dumps into the work_dir
        f.write('')
    return a, b


def test_compare_two_runs(runs, tmp_path):
    a, b = runs
    out = compare_runs([a, b], str(tmp_path / 'cmp'), per_class=True)
    rows = list(csv.DictReader(open(out['csv'])))
    assert [r['run'] for r in rows] == ['paper', 'all-levels']
    pa, pb = rows
    assert (pa['config'], pa['iteration'], pa['split']) == ('demo', '450', 'test')
    assert (pb['config'], pb['iteration'], pb['split']) == ('demo_all', '200', 'val')  # from names
    assert float(pa['bbox mAP L1']) == pytest.approx(0.7) and float(pa['segm mAP all']) == pytest.approx(0.3)
    assert pa['bbox mAP L3'] == '' and float(pb['bbox mAP L2']) == pytest.approx(0.25)
    assert float(pa['bbox agnostic mAP']) == pytest.approx(0.6)  # the newest test table
    assert float(pb['culture acc.']) == pytest.approx(0.5)
    md = open(out['markdown']).read()
    assert '| paper | demo | 450 | test | 70.00 | 50.00 | n/a | 60.00 |' in md
    assert 'up to 1000 detections per image' in md
    per_class = list(csv.reader(open(out['per_class_csv'])))
    assert per_class[0] == ['class', 'paper', 'all-levels']
    assert per_class[1][0] == 'HeLa cell' and float(per_class[1][1]) == pytest.approx(0.25)  # segm, all
    assert open(out['png'], 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


def test_glob_and_ap_tables_and_table_folder_inputs(runs, tmp_path):
    a, b = runs
    (tmp_path / 'compare').mkdir()  # e.g. the comparison's own output beside the runs: not a run
    (tmp_path / 'notes.txt').write_text('')
    by_glob = collect_runs([str(tmp_path / '*')])
    assert sorted(r.label for r in by_glob) == ['all-levels', 'paper']
    with pytest.raises(CompareError, match='the pattern matches no evaluated run'):
        collect_runs([str(tmp_path / 'comp*')])
    (r,) = collect_runs([osp.join(a, 'ap_tables')], select='val')
    assert r.folder.endswith('iter_450') and r.iteration == 450
    (r,) = collect_runs([osp.join(a, 'ap_tables', 'test_iter_450_20260101_120000')])
    assert r.iteration == 450  # parsed from the folder name where the run info has none
    two = collect_runs([osp.join(a, 'ap_tables', 'iter_450'), osp.join(a, 'ap_tables', 'test_iter_450_20260102_120000')])
    assert [x.label for x in two] == ['paper/iter_450', 'paper/test_iter_450_20260102_120000']


def test_different_class_sets_compare_on_shared_classes(tmp_path):
    cells = {'HeLa cell': {'1': 0.6, 'all': 0.6}, 'MCF-7 cell': {'1': 0.2, 'all': 0.2}}
    both = dict(cells, **{'HeLa nucleus': {'1': 1.0, 'all': 1.0}})
    both['MCF-7 cell'] = {'1': 0.4, 'all': 0.4}
    a, b = str(tmp_path / 'cells'), str(tmp_path / 'cells+nuclei')
    write_run(a, 'iter_10', make_tables(cells))
    write_run(b, 'iter_10', make_tables(both))
    out = compare_runs([a, b], str(tmp_path / 'cmp'), per_class=True, iou='bbox')
    rows = list(csv.DictReader(open(out['csv'])))
    assert float(rows[0]['bbox mAP all']) == pytest.approx(0.4)
    assert float(rows[1]['bbox mAP all']) == pytest.approx(0.5)  # nuclei left out: (0.6 + 0.4) / 2
    assert rows[1]['bbox agnostic mAP'] == '' and rows[1]['culture acc.'] == ''
    assert [r['classes'] for r in rows] == ['2', '2']
    assert 'different classes' in open(out['markdown']).read()
    per_class = {r[0]: r[1:] for r in csv.reader(open(out['per_class_csv']))}
    assert per_class['HeLa nucleus'] == ['', '1.000000']  # n/a in the run without it


@pytest.mark.parametrize('make,expected', [
    (lambda t: str(t / 'nope'), 'nope: no such file or folder'),
    (lambda t: str(t / 'empty*'), 'empty*: the pattern matches nothing'),
    (lambda t: (t / 'wd').mkdir() or str(t / 'wd'), 'wd: no ap_tables/*/metrics.json inside'),
])
def test_bad_inputs_are_one_line_errors(tmp_path, make, expected):
    path = make(tmp_path)
    with pytest.raises(CompareError, match=expected.replace('*', r'\*')):
        collect_runs([path])


def test_broken_metrics_json_names_the_file(tmp_path, runs):
    a, _ = runs
    bad = osp.join(str(tmp_path / 'bad'), 'ap_tables', 'iter_5')
    os.makedirs(bad)
    with open(osp.join(bad, 'metrics.json'), 'w') as f:
        f.write('{"tables": ')
    res = subprocess.run([sys.executable, '-m', 'deepcis_mm.cli', 'compare', a, str(tmp_path / 'bad'),
                          '--out', str(tmp_path / 'cmp')], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith('deepcis compare: error: ') and \
        lines[0].endswith('metrics.json: not valid JSON (Expecting value: line 1 column 12 (char 11))')
    assert not osp.exists(tmp_path / 'cmp')  # nothing written on bad input


def test_deepcis_compare_cli(runs, tmp_path):
    from deepcis_mm.cli import main
    a, b = runs
    assert main(['compare', a, b, '--out', str(tmp_path / 'cli')]) == 0
    assert sorted(os.listdir(tmp_path / 'cli')) == ['compare.csv', 'compare.md', 'compare.png']
    assert main(['compare', str(tmp_path / 'missing')]) == 2


def test_ap_table_hook_records_what_compare_needs(tmp_path):
    """Tables written by APTableHook (val during training, test of a loaded checkpoint) carry the config
    name and the iteration, and compare reads them back."""
    from types import SimpleNamespace

    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from test_metric_category_ids import _random_case, run_metric

    from deepcis_mm.engine.hooks import APTableHook
    gt, preds, _ = _random_case(tmp_path, 5, 96)
    flat, tables = run_metric(gt, preds, 96)
    metric = SimpleNamespace(last_tables=tables, ann_file=gt)
    cfg_file = tmp_path / 'my_config.py'
    cfg_file.write_text('x = 1\n')
    cfg = Config.fromfile(str(cfg_file))
    wd = tmp_path / 'run'
    runner = SimpleNamespace(work_dir=str(wd), iter=300, epoch=0, cfg=cfg, timestamp='20260101_000000',
                             logger=MMLogger.get_current_instance(),
                             val_loop=SimpleNamespace(evaluator=SimpleNamespace(metrics=[metric])),
                             test_loop=SimpleNamespace(evaluator=SimpleNamespace(metrics=[metric])))
    hook = APTableHook()
    hook.after_val_epoch(runner, flat)
    val = json.load(open(wd / 'ap_tables' / 'iter_300' / 'metrics.json'))['run']
    assert (val['mode'], val['iteration'], val['config_name'], val['ann_file']) == ('val', 300, 'my_config', gt)
    # a test run: iteration 0 in the runner, the trained iteration in the loaded checkpoint
    cfg.load_from = str(tmp_path / 'iter_450.pth')
    runner.iter = 0
    hook.after_load_checkpoint(runner, dict(meta=dict(iter=450, epoch=0), state_dict={}))
    hook.after_test_epoch(runner, flat)
    (r,) = collect_runs([str(wd)])
    assert r.folder.endswith('test_iter_450_20260101_000000') and r.iteration == 450
    assert r.run['checkpoint'].endswith('iter_450.pth') and r.config_name == 'my_config'
    header, rows, _ = comparison_rows([r])
    row = dict(zip(header, rows[0]))
    assert row['segm mAP all'] == pytest.approx(tables['segm']['levels']['all']['mAP'])
    assert row['culture acc.'] == pytest.approx(tables['culture']['levels']['all']['accuracy'])
