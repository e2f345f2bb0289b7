"""HTTP both ways: the outbound client base every provider client and the webhook sender use, and the
inbound listeners (public and admin)."""
