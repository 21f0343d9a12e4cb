"""Processing provider and algorithms (thin wrappers over ``core.engine.pipeline``)."""
