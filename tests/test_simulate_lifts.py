"""`compound-gateway simulate --lifts`: the site file's lift boxes and fire panel served on
loopback by the command, in its own process, driven by timed steps, and read by a real
gateway started on the site file the command wrote."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from gateway.app import Gateway, Overrides
from gateway.config import load_site
from simulators.compound import main
from simulators.compound_lifts import parse_step
from tests.brokers import Mosquitto
from tests.test_lifts_gateway import _site


async def test_simulate_serves_the_lifts_and_panel_to_a_real_gateway(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    # The engineer's site file, with the boxes' real (unreachable here) addresses.
    site = _site(tmp_path / "site", 1, 2, None)
    pointed = tmp_path / "run" / "site.yaml"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "simulate", "--broker",
        f"{mosquitto.host}:{mosquitto.port}", "--site", str(site), "--lifts",
        "--lifts-site", str(pointed), "--lift-step", "1 trap lift-1",
        "--lift-step", "1 isolate sd-h-01", "--lift-step", "2 fly lift-1",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(30):
            while not pointed.is_file():
                assert process.returncode is None
                await asyncio.sleep(0.05)
        text = pointed.read_text(encoding="utf-8")
        assert "tcp://127.0.0.1:1/" not in text and "tcp://127.0.0.1:2/" not in text
        assert "fire_triggers: 2" in text  # the rest of the file as written
        gw = Gateway(load_site(pointed), pointed, overrides=Overrides(http_port=0))
        task = asyncio.create_task(gw.run())
        try:
            async with asyncio.timeout(30):
                while "elevator.entrapment:lift-1" not in {a.key for a in gw.book.active()}:
                    assert not task.done()
                    await asyncio.sleep(0.05)
                while "fire.point.isolated:sd-h-01" not in {a.key for a in gw.book.active()}:
                    await asyncio.sleep(0.05)
            assert gw.lifts is not None
            known = {x["lift"] for x in gw.lifts.elevator.snapshot() if x["known"]}
            assert known == {"lift-1", "lift-2", "lift-3"}
        finally:
            gw.request_shutdown()
            async with asyncio.timeout(10):
                await task
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            _, err = await process.communicate()
    assert process.returncode == 0
    log = err.decode()
    assert "event=lifts_served boxes=4" in log
    # A step the boxes do not know is logged with its error; the others went on.
    assert "line='fly lift-1' answer=\"error: unknown action 'fly'\"" in log


def test_lifts_need_the_site_file_and_steps_need_their_second(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--broker", "127.0.0.1:1", "--lifts"]) == 2
    assert "--lifts needs --site" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--lift-step", "soon trap lift-1"])
    assert "starts with its second" in capsys.readouterr().err
    assert parse_step(" 2.5  trap lift-main-05 ") == (2.5, "trap lift-main-05")
    for bad in ("-1 trap lift-1", "3", "3   "):
        with pytest.raises(ValueError, match="a lift step"):
            parse_step(bad)
