"""The vehicle side of the barrier gates: plates, the registry of vehicles, pictures."""
