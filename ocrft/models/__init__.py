"""Model families: one small adapter per family, listed in registry.FAMILIES."""
