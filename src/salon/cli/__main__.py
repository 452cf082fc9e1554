"""`python -m salon.cli` — the same as the `salon` script."""

from salon.cli.main import main

main()
