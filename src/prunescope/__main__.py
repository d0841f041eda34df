"""``python -m prunescope``: the ``prunescope`` command line (e.g. where the package is on
``PYTHONPATH`` but not installed)."""
from prunescope.cli import main

main()
