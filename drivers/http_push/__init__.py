"""Devices that push to the gateway over HTTP: the plate cameras at the barrier gates."""
