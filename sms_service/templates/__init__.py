"""Message templates: versioned bodies with ((placeholders)), their routes and backups (SPEC section 16)."""
