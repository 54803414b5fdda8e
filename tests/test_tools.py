"""tools/ fail on bad set-up with one line naming the file and the cause."""
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = 'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py'


def _run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def _error_lines(stderr):
    return [ln for ln in stderr.splitlines() if ': error: ' in ln]


def test_config_typo_is_one_line_error(tmp_path):
    res = _run('tools/train.py', DEMO, '--work-dir', str(tmp_path), '--cfg-options', 'model.roi_head.num_clases=3')
    assert res.returncode == 2
    (line,) = _error_lines(res.stderr)
    assert line.startswith(f'train: error: {DEMO}: ConfigKeyError: --cfg-options model.roi_head.num_clases: '
                           f'no such key in the config (did you mean model.roi_head.num_classes?')


def test_missing_config_and_checkpoint(tmp_path):
    res = _run('tools/train.py', 'configs/demo/missing.py')
    assert res.returncode == 2 and _error_lines(res.stderr) == [
        'train: error: configs/demo/missing.py: FileNotFoundError: config file configs/demo/missing.py does '
        'not exist (DEEPCIS_DEBUG=1 for a traceback)']
    res = _run('tools/test.py', DEMO, str(tmp_path / 'none.pth'))
    assert res.returncode == 2 and 'checkpoint' in _error_lines(res.stderr)[0]
