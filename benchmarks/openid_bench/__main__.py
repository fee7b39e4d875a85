"""``python -m openid_bench`` (from ``benchmarks/``): the same as ``run.py``."""

import sys

from .cli import main

if __name__ == "__main__":  # importing it (as the layout test does) must not start a run
    sys.exit(main())
