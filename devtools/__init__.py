"""Development helpers that are not part of the product (the local mail sink)."""
