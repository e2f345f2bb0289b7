"""Outgoing webhooks: signing (and verifying), delivering, per-endpoint state."""
