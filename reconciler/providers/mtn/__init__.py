"""The MTN data-bundle reseller: client, fake, phones, store, account, settlement, inbound route, CLI."""
