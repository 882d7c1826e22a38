"""Explanations and refactors: prompts, checked edits, the assistant."""
