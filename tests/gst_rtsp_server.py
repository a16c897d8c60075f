"""A camera nobody here wrote: GStreamer's RTSP server (Debian's gir1.2-gst-rtsp-server-1.0)
serving a live test picture over RTP/TCP, with a Digest or Basic login. Run by the system
Python, which has PyGObject:

    /usr/bin/python3 tests/gst_rtsp_server.py h264|h265 digest|basic USER PASSWORD

prints its port, then serves `rtsp://127.0.0.1:<port>/sub` until killed."""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtsp", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main() -> None:
    codec, method, user, password = sys.argv[1:5]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service("0")
    enc = "x264enc" if codec == "h264" else "x265enc"
    pay = "rtph264pay" if codec == "h264" else "rtph265pay"
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=180,"
        f"framerate=25/1 ! {enc} tune=zerolatency speed-preset=ultrafast key-int-max=25 ! "
        f"{pay} name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(True)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "viewer")
    if method == "digest":
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        auth.add_digest(user, password, token)
    else:
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_role_from_structure(Gst.Structure.new_from_string(
        "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
    factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/sub", factory)
    server.attach(None)
    print(server.get_bound_port(), flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
