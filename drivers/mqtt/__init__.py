"""MQTT-native devices: the fire system's heat detectors publishing JSON, and the codec
seam that lets other device families share a broker connection.

Importing this package imports nothing else: the core reads the site file's models
(`config`) without the MQTT stack; import `driver`, `heat_detector`, `reports` where they
run."""
