"""The documentation's examples are tests: `pytest --doctest-glob='*.rst' docs` runs every
``>>>`` example of the pages and the tests of docs/examples/."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "examples"))

pytest_plugins = ["openid_plugins.testing.contract"]
