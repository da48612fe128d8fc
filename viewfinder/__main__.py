"""`python -m viewfinder`: the command-line interface."""

from viewfinder.cli import main

main()
