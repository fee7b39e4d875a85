"""Throughput of the SQL store per dialect, next to each database's raw INSERT rate: the
entry point of ``openid_bench.sql_stores``.

    .venv/bin/python benchmarks/bench_sql_stores.py [--ops 3000] [--rounds 5]
        [--dialects sqlite,postgresql,mysql] [--out PATH]

Kept as a file so the command stays the same; run as a script, its folder is first on
``sys.path``, which is how it finds the package beside it.
"""

import sys

from openid_bench.sql_stores import main

if __name__ == "__main__":
    sys.exit(main())
