"""Providers: small interfaces in front of every outside service, with a local default."""
