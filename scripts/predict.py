#!/usr/bin/env python
"""Same as `deepcis predict ...` (deepcis_mm/cli.py): segment cells/nuclei, name their culture, export.

    python scripts/predict.py INPUT --config CONFIG --checkpoint CKPT [--out DIR] [--consensus] ...
"""
import sys

from deepcis_mm.cli import main

if __name__ == '__main__':
    sys.exit(main(['predict', *sys.argv[1:]]))
