"""NetworkPolicy engine: who may talk to whom, and why (pure, no I/O)."""
