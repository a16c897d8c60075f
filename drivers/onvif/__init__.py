"""CCTV cameras over ONVIF: device information, clock, profiles, PullPoint events,
snapshots and WS-Discovery, on onvif-zeep-async (behind `adapter.py` only)."""
