"""Zoho Books (T2Mobile licences): OAuth, client, fake, ... (the flow's pieces join this package as they land)."""
