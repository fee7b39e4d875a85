"""``python -m openid_plugins`` runs the ``openid-plugins`` command."""

import sys

from .cli import main

sys.exit(main())
