"""CCTV cameras: RTSP streams and ONVIF."""
