"""Delivery status (SPEC section 10): message records, provider callbacks, GET /messages/{sid}.

`model` holds the normalised statuses and the sticky-state rule every storage applies;
`service` records sends and applies callbacks; `routes` is the HTTP side. Parsing a
provider's callback belongs to its plugin (`Provider.parse_status_callback`).
"""
