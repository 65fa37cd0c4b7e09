"""``python -m rotator`` is the ``rotator`` command."""

from rotator.entrypoints.cli import main

main()
