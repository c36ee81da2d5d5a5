"""Opt-out (STOP) suppression: the list, the keywords, the inbound and admin routes (SPEC section 12)."""
