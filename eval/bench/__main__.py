"""``python -m eval.bench``."""
import sys

from eval.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
