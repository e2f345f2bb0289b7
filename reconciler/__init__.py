"""reconciler: fulfils shop orders through external providers and never loses track of one."""
