"""The `reconciler` command line (the root group is in cli.root). Exit codes: 0 ok, 1 failure, 2 usage or
config error."""
