"""Context for the model: pure functions of (documents, position, budget)."""
