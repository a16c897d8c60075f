"""TLS on the gateway's links: a broker that wants our client certificate, and a webhook
over https with a private CA. The certificates are made here with openssl, signed by a
throw-away CA."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from gateway.errors import Unreachable
from gateway.forward.webhook import WebhookForwarder
from gateway.mqtt_loop import LinkOptions, MqttLink, Tls
from gateway.store import NewOutboxRow, Store, WriteBatch
from tests.brokers import Mosquitto, free_port
from tests.test_mqtt_driver import Link


def openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    assert binary is not None, "openssl is not installed: run `sh scripts/install-system-deps`"
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki() -> Iterator[Path]:
    """ca.pem; server.pem/key for 127.0.0.1; client.pem/key: all readable by the broker
    (which drops to its own user), so not under pytest's private temporary folder."""
    d = Path(tempfile.mkdtemp(prefix="pki-"))
    d.chmod(0o755)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=Test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, ext in (("server", ["-extfile", "san.ext"]), ("client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *ext, cwd=d)
    for f in d.iterdir():
        f.chmod(0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def tls_broker(pki: Path) -> Mosquitto:
    return Mosquitto(listener=(f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\n"
                               f"keyfile {pki / 'server.key'}\nrequire_certificate true\n"))


async def test_a_broker_link_with_a_client_certificate(pki: Path) -> None:
    with tls_broker(pki) as broker:
        tls = Tls(str(pki / "ca.pem"), str(pki / "client.pem"), str(pki / "client.key"))
        link = MqttLink(LinkOptions(broker.host, broker.port, "tls-ok", tls=tls))
        await link.connect()
        granted = await link.subscribe([("furong/#", 1)])
        reason = await link.publish("furong/x", b"over tls", qos=1)
        batch = await asyncio.wait_for(link.next_batch(), 5)
        await link.disconnect()
    assert not granted[0].is_failure and not reason.is_failure
    assert [m.payload for m in batch] == [b"over tls"]


async def test_a_broker_link_without_the_certificate_it_wants_fails_clearly(pki: Path) -> None:
    with tls_broker(pki) as broker:
        # Our CA does not sign the broker: refused on our side, saying TLS.
        wrong_ca = MqttLink(LinkOptions(broker.host, broker.port, "tls-wrong-ca",
                                        tls=Tls(str(pki / "client.pem"))))
        with pytest.raises(Unreachable, match="TLS"):
            await wrong_ca.connect()
        # No client certificate: the broker ends the handshake.
        no_cert = MqttLink(LinkOptions(broker.host, broker.port, "tls-no-cert",
                                       tls=Tls(str(pki / "ca.pem"))))
        with pytest.raises(Unreachable):
            await no_cert.connect()


async def test_a_webhook_over_https_with_a_private_ca(pki: Path, tmp_path: Path) -> None:
    got: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.read())
        return web.Response(status=204)

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki / "ca.pem")
    server_ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_ctx).start()
    store = Store(tmp_path / "gateway.db")
    store.open(asyncio.get_running_loop())
    try:
        await store.submit(WriteBatch(outbox=[
            NewOutboxRow("ops", 0, "alert", b'{"alert": {"id": "a1"}, "change": "raised"}')]))
        fwd = WebhookForwarder(
            "ops", url=f"https://127.0.0.1:{port}/hook", store=store,
            tls=Tls(str(pki / "ca.pem"), str(pki / "client.pem"), str(pki / "client.key")))
        task = asyncio.create_task(fwd.run(Link()))
        async with asyncio.timeout(10):
            while not got:
                await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await store.close()
        await runner.cleanup()
    assert got == [b'{"alert": {"id": "a1"}, "change": "raised"}']
