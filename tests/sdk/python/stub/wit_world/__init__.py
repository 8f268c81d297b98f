"""Stand-in for the bindings componentize-py generates from wit/ (the three worlds at once)."""
