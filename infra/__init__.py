"""What every layer of the kit uses: the base error and one-line error reports, atomic file writes,
YAML configs, run-folder locks and the time/energy ledger. Standard library (and PyYAML) only: no
Paddle, no numpy, nothing of the layers above."""
