"""The Furong compound gateway: drivers in, typed events, a durable store, alerts out."""

__version__ = "0.1.0"
