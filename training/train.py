"""Entry point of ``python -m training.train`` (the options live in :mod:`training.cli`).

Run this module, do not import it: importing ``training.train`` as a module would shadow the
``training.train`` function that ``from training import train`` gives.
"""
import sys

from training.cli import main

if __name__ == "__main__":
    sys.exit(main())
