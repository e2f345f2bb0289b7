"""One folder per provider; each declares what it brings in its `provider` module (see reconciler.app)."""
