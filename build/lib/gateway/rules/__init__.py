"""Rules: pure functions of (state, item, time) that say which alert conditions hold.
One module per domain; none does I/O or reads a clock."""
