"""Simulators that speak the compound's real wire protocols, with fault injection."""
