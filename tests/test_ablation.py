"""scripts/analysis_tools/ablation.py: variant parsing, printed cluster commands, kept/failed variants."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SCRIPT = osp.join(ROOT, 'scripts', 'analysis_tools', 'ablation.py')
DEMO = 'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py'


def _module():
    spec = importlib.util.spec_from_file_location('ablation', SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_parse_variants():
    ab = _module()
    v = ab.parse_variants(['base=', "small=model.x.sizes=[4,8] 'model.y=a b'"])
    assert v == {'base': [], 'small': ['model.x.sizes=[4,8]', 'model.y=a b']}
    for bad, msg in ((['no-equals'], 'expected NAME=OPTIONS'), (['a/b=x=1'], 'expected NAME=OPTIONS'),
                     (['a=x=1', 'a=y=2'], 'given twice'), (['a=model.x'], "'model.x' is not a key=value"),
                     ([], 'no --variant')):
        with pytest.raises(ab.AblationError, match=msg):
            ab.parse_variants(bad)


def test_print_only_cluster_commands():
    res = _run(DEMO, '--variant', 'paper=', '--variant', 'all=model.rpn_head.anchor_generator.mode=all_levels',
               '--common', 'train_cfg.max_iters=100', '--work-dir', 'work_dirs/abl', '--print-only',
               '--launcher', 'pytorch', '--gpus', '4')
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == (f'bash tools/dist_train.sh {DEMO} 4 --work-dir work_dirs/abl/paper '
                        '--cfg-options train_cfg.max_iters=100')
    assert lines[1] == (f'bash tools/dist_test.sh {DEMO} "$(cat work_dirs/abl/paper/last_checkpoint)" 4 '
                        '--work-dir work_dirs/abl/paper --cfg-options train_cfg.max_iters=100')
    assert lines[2].endswith('--cfg-options train_cfg.max_iters=100 model.rpn_head.anchor_generator.mode=all_levels')
    assert lines[-1] == 'deepcis compare work_dirs/abl/paper work_dirs/abl/all --per-class --out work_dirs/abl/compare'
    assert not osp.exists(osp.join(ROOT, 'work_dirs/abl'))  # printing runs nothing
    res = _run(DEMO, '--variant', 'paper=', '--work-dir', 'work_dirs/abl', '--print-only', '--launcher', 'slurm',
               '--partition', 'gpu', '--gpus', '8')
    assert res.stdout.splitlines()[0] == (f'GPUS=8 bash tools/slurm_train.sh gpu ablation-paper {DEMO} '
                                          'work_dirs/abl/paper')


@pytest.mark.parametrize('args,msg', [
    (['configs/missing.py', '--variant', 'a='], 'configs/missing.py: config not found'),
    ([DEMO, '--variant', 'a=', '--launcher', 'slurm'], 'add --print-only'),
    ([DEMO, '--variant', 'a'], 'expected NAME=OPTIONS'),
])
def test_bad_arguments_are_one_line_errors(args, msg):
    res = _run(*args)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith('ablation.py: error: ') and msg in lines[0]


def test_finished_variant_is_kept_and_failing_one_stops_with_its_log(tmp_path):
    """A variant with test tables is not retrained; a variant whose training fails (a typo in its
    options) stops the ablation with one line naming it and its log; the finished one stays."""
    done = tmp_path / 'done' / 'ap_tables' / 'test_iter_10_20260101_000000'
    done.mkdir(parents=True)
    (done / 'metrics.json').write_text(json.dumps(dict(run={}, metrics={}, tables={})))
    res = _run(DEMO, '--variant', 'done=', '--variant', 'typo=model.roi_head.num_clases=3',
               '--work-dir', str(tmp_path))
    assert res.returncode == 2, res.stderr
    assert '[done] ' in res.stdout and 'already has test tables: kept' in res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    log = tmp_path / 'typo' / 'ablation_train.log'
    assert len(lines) == 1 and lines[0].startswith(f'ablation.py: error: [typo] training failed (exit 2), see {log}')
    assert 'num_clases' in lines[0] and log.is_file()
    assert sorted(os.listdir(tmp_path / 'done' / 'ap_tables')) == ['test_iter_10_20260101_000000']
