import os
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def worker_env() -> dict:
    """The environment of a benchmark worker process: this one's, with the repository root importable
    (workers run as ``python -m scripts.analysis_tools.benchmarks.<name>`` from any directory)."""
    path = os.environ.get('PYTHONPATH')
    return dict(os.environ, PYTHONPATH=ROOT + (os.pathsep + path if path else ''))
