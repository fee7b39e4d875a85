"""openid-plugins side by side with python3-openid: the entry point of ``openid_bench``.

    .venv/bin/python benchmarks/run.py [--quick] [--out PATH] [--only complete,begin,...]

Kept as a file so the command stays what the README and CONTRIBUTING.md say; run as a
script, its folder is first on ``sys.path``, which is how it finds the package beside it.
Options and sections: ``openid_bench/cli.py`` (or ``--help``).
"""

import sys

from openid_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
