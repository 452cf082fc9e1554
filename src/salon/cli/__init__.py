"""The terminal surface: `salon up`, `run`, `who`, `send`, `read`."""
