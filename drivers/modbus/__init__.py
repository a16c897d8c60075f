"""Modbus meters and I/O modules over TCP, RTU on a serial line, and RTU over TCP.

Importing this package does not import pymodbus: the site file's models (`config`) are
used by the core; `driver`, `adapter` and the simulators import the stack themselves.
"""
