"""scripts/analysis_tools/proposal_count.py: its tables on known measurements, its argument checks."""
import subprocess
import sys

from conftest import ROOT
from scripts.analysis_tools.proposal_count import accuracy_table, speed_table


def _speed(model, n, median, fused=False, box=1.0):
    return dict(model=model, proposals=n, fused=fused, median=median, cpu_median=2 * median, peak_mib=100.0,
                parts={'box heads': box})


def test_speed_table_ratios_against_stock_at_3000_and_at_the_same_count():
    rows = [_speed('a', 3000, 60.0), _speed('a', 300, 12.0), _speed('a', 300, 11.0, fused=True),
            _speed('b', 3000, 15.0), _speed('b', 300, 8.0)]
    lines = speed_table(rows).splitlines()[2:]
    cells = [[c.strip() for c in line.strip('|').split('|')] for line in lines]
    # columns: model, proposals, fused, s/img, CPU s/img, box heads, x (b)@3000, x (b)@same, peak
    assert cells[0][6:8] == ['4.00', '4.00']
    assert cells[1][6:8] == ['0.80', '1.50']
    assert cells[2][2] == 'yes' and cells[2][6:8] == ['0.73', '1.38']
    assert cells[3][6:8] == ['1.00', '1.00'] and cells[4][6:8] == ['0.53', '1.00']
    assert cells[1][4] == '24'


def _acc(n, segm, l2, seconds=10.0):
    m = {'coco/bbox_mAP': 0.2, 'coco/segm_mAP': segm, 'coco/segm_L1_mAP': 0.3, 'coco/segm_L2_mAP': l2,
         'coco/segm_L3_mAP': 0.1, 'coco/segm_agnostic_mAP': 0.4}
    return dict(proposals=n, seconds=seconds, metrics=m)


def test_accuracy_table_deltas_against_the_largest_count():
    text = accuracy_table([_acc(3000, 0.2133, 0.2687), _acc(300, 0.2108, 0.2739)])
    assert 'Δ segm vs 3000' in text
    last = [c.strip() for c in text.splitlines()[-1].strip('|').split('|')]
    assert last[0] == '300' and last[2] == '21.08' and last[7] == '-0.25' and last[8] == '+0.52'


def test_bad_counts_are_a_one_line_error():
    proc = subprocess.run([sys.executable, 'scripts/analysis_tools/proposal_count.py', '--counts', '300,x'],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith('proposal_count.py: error: --counts 300,x')


def test_paper_configs_default_to_300_proposals_and_the_authors_3000_is_a_named_config():
    from mmengine.config import Config
    for setting in ('cell', 'nucleus', 'cell-nucleus'):
        base = f'{ROOT}/configs/deepcis/deepcis_s200-dcnv2_fpn_3.5k_evican60-{setting}'
        default, authors = Config.fromfile(base + '.py').to_dict(), Config.fromfile(base + '_3000-proposals.py').to_dict()
        assert default['model']['test_cfg']['rpn']['max_per_img'] == 300
        assert authors['model']['test_cfg']['rpn']['max_per_img'] == 3000
        assert authors['model']['train_cfg'] == default['model']['train_cfg']  # training unchanged (3000)
        authors['model']['test_cfg']['rpn']['max_per_img'] = 300
        assert authors == default  # nothing else differs
