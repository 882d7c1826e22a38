"""Next-edit suggestions: the change the user will likely make next, anywhere near.

``history`` keeps the user's recent edits as unified diffs; ``prompts`` lays them
out for next-edit model families (Sweep, Zeta) or an instruct model; ``gate``
turns the model's rewrite into a minimal edit and decides whether to show it;
``pipeline`` runs the steps. No LSP here.
"""
