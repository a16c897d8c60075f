"""Device drivers, one folder per protocol. Hardware libraries are imported only here."""
