"""LSP features, each with ``register(server)``; only here and server.py use pygls."""
