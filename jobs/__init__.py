"""The periodic jobs, one module each, each a short story: claim, call, record. reconciler.app and the
providers' declarations say which of them run."""
