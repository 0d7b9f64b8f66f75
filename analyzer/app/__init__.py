"""Application protocols inside WebSocket messages: decoders (analyzer/app/protocols/, one module
each), the registry that chooses them, and requests paired with responses (issue 19)."""
