"""The `reconciler` command line. Exit codes: 0 ok, 1 failure, 2 usage or config error."""
from reconciler.cli.root import cli, main

__all__ = ["cli", "main"]
