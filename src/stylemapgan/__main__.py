"""`python -m stylemapgan` (and `torchrun -m stylemapgan`) runs the CLI."""

import sys

from stylemapgan.cli import main

if __name__ == "__main__":
    sys.exit(main())
