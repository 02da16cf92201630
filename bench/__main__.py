"""`python -m bench`: see `bench.runner`."""

from .runner import main

main()
