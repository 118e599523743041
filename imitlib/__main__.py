"""``python -m imitlib run|report|check|serve|environment``."""

import sys

from imitlib.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
