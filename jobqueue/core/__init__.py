"""The engine's lowest layer: key names, the JSON codec, the Lua scripts and the typed layer
that calls them, and Redis connections. Everything else in `jobqueue` is built on it."""
