"""``python -m prep_es.cli``: the same as ``prep-es``."""

import sys

from prep_es.cli import main

sys.exit(main())
