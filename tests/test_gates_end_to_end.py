"""The barrier gates end to end: simulated plate cameras push over real HTTP from their own
loopback addresses to the listener of a running gateway, whose rules decide against the
registry on disk; barriers are simulated HTTP controls that obey, jam or hold open."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from gateway.alerts import Alert, AlertSignal
from gateway.events import Event, Heartbeat, Reading, Severity
from gateway.rules import Verdict
from simulators.gates import MALFORMED, hikvision_body, picture, vzenith_body
from tests.brokers import Mosquitto
from tests.gates_site import SECRET, Compound, compound, until
from tests.harness import detectors


async def until_async(fetch: Callable[[], Awaitable[str]], wanted: str,
                      within: float = 10.0) -> None:
    """Until the text fetched holds `wanted` (the metrics page, after the commit)."""
    async with asyncio.timeout(within):
        while wanted not in await fetch():
            await asyncio.sleep(0.05)


async def test_a_registered_car_is_let_in_by_the_reply(tmp_path: Path) -> None:
    async with compound(tmp_path) as c:
        cam = c.cameras["gate-main-in"]
        result = await cam.read("湘A8B8B8")
        assert result.status == 200
        assert result.json() == {"Response_AlarmInfoPlate": {"info": "ok", "content": "open"}}
        assert c.barriers.barriers["gate-main-in"].state == "open"
        # Committed before the answer, with the decision audited beside it.
        [plate] = c.events("gate.plate")
        assert plate["plate"] == "湘A8B8B8" and plate["offline"] is False
        assert len(plate["pictures"]) == 1
        [(who, action, target, detail)] = c.audit("decision.%")
        assert (who, action, target) == ("rule:vehicles", "decision.open", "gate-main-in")
        assert detail["why"].startswith("staff ")
        status, body = await c.get("/api/gates")
        assert status == 200 and b'"compound": 1' in body
        text = await c.metrics()
        assert 'gateway_gate_answer_seconds_count{vendor="vzenith"} 1.0' in text
        # Opened by the reply, which nothing reads back: not confirmed yet.
        assert ('gateway_gate_decisions_total{decision="opened_confirmed",gate="gate-main-in"}'
                ' 0.0') in text
        assert 'gateway_gate_decisions_total{decision="refused",gate="gate-main-in"} 0.0' in text
        # The barrier's own report says it is open: the open is confirmed, once.
        assert (await cam.report_state("open")).status == 200
        await cam.report_state("open")
        await until(lambda: len(c.events("gate.state")) == 2)
        text = await c.metrics()
        assert ('gateway_gate_decisions_total{decision="opened_confirmed",gate="gate-main-in"}'
                ' 1.0') in text
        assert ('gateway_gate_decisions_total{decision="opened_unconfirmed",gate="gate-main-in"}'
                ' 0.0') in text


async def test_a_fuzzy_read_opens_only_for_the_classes_the_policy_names(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with compound(tmp_path) as c:
        cam = c.cameras["gate-main-in"]
        assert (await cam.read("湘AB8B8B")).opened is False  # two swaps from 湘A8B8B8
        assert (await cam.read("湘A8B8BB")).opened is True  # one: staff may open fuzzily
        [(_, _, _, detail)] = c.audit("decision.%")
        assert "fuzzy: read p-" in detail["why"] and "湘" not in detail["why"]
        out = await c.cameras["gate-suv-lot"].read("湘A6G666")  # an SUV: not fuzzily
        assert out.opened is False
        [refused] = [a for a in c.active("gate.refused") if a.source == "gate-suv-lot"]
        assert "fuzzy matches open only for official, staff" in refused.summary
        # A low-confidence province character is forgiven; a sure one never.
        assert (await cam.read("鄂A8B8B8")).opened is False
        assert (await cam.read("鄂A8B8B8", province_confidence=40)).opened is True
    # Fuzzy opens are logged, and no log line carries a plate.
    messages = [r.getMessage() for r in caplog.records]
    assert any("fuzzy match opened" in m for m in messages)
    assert not [m for m in messages if "A8B8B" in m or "A6G66" in m or "A66666" in m]


async def test_an_unknown_car_stays_out_alerts_with_its_picture_and_the_desk_opens(
    tmp_path: Path,
) -> None:
    async with compound(tmp_path) as c:
        cam = c.cameras["gate-main-in"]
        result = await cam.read("鄂B54321")
        assert result.status == 200 and not result.opened
        assert c.barriers.barriers["gate-main-in"].state == "closed"
        assert ('gateway_gate_decisions_total{decision="refused",gate="gate-main-in"} 1.0'
                in await c.metrics())
        await until(lambda: c.active("gate.refused"))
        [alert] = c.active("gate.refused")
        assert alert.source == "gate-main-in" and alert.data["reason"] == "not registered"
        assert alert.data["plate"] == "鄂B54321"
        [name] = alert.data["pictures"]
        status, data = await c.get(f"/api/gates/pictures/{name}")
        assert status == 200 and data.startswith(b"\xff\xd8\xff")
        assert (await c.get("/api/gates/pictures/2026-01-01/..%2Fgateway.db"))[0] == 404
        # The desk opens by hand with a reason: audited, and the barrier moves.
        status, body = await c.post("/api/gates/gate-main-in/open",
                                    {"reason": "visitor for room 214", "operator": "wang"})
        assert (status, body["status"]) == (200, "verified")
        assert c.barriers.barriers["gate-main-in"].state == "open"
        stages = [(d["stage"], d.get("status")) for _, a, t, d in c.audit("command.open")
                  if t == "gate-main-in"]
        assert stages == [("requested", None), ("result", "verified")]
        who = c.audit("command.open")[0][0]
        assert who.startswith("wang via api from 127.0.0.1")
        await until(lambda: not c.active("gate.refused"))
        # Refused without a reason, and for a gate that does not exist.
        assert (await c.post("/api/gates/gate-main-in/open", {"operator": "wang"}))[0] == 400
        assert (await c.post("/api/gates/nowhere/open",
                             {"reason": "r", "operator": "wang"}))[0] == 404


@pytest.mark.parametrize(
    ("plate", "gate", "opens", "why"),
    [
        ("湘A12345", "gate-parking-b1", True, "official"),
        ("湘A8B8B8", "gate-parking-b1", False, "not allowed at gate-parking-b1"),
        ("湘A66666", "gate-suv-lot", True, "suv"),
        ("湘A12345", "gate-suv-lot", False, "does not park in suv-lot-north"),
        ("湘A99999", "gate-main-in", False, "is barred"),
        ("湘AD20000", "gate-main-in", False, "not valid now"),
    ],
)
async def test_zone_rules_at_each_gate(
    tmp_path: Path, plate: str, gate: str, opens: bool, why: str
) -> None:
    async with compound(tmp_path) as c:
        result = await c.cameras[gate].read(plate)
        assert result.status == 200
        barrier = c.barriers.barriers[gate]
        if opens:
            # Hikvision's answer says only "stored"; the barrier opens through its control.
            await until(lambda: barrier.state == "open")
            assert why in c.audit("decision.open")[0][3]["why"]
        else:
            await until(lambda: c.active("gate.refused"))
            assert why in c.active("gate.refused")[0].data["reason"]
            assert barrier.state == "closed"


async def test_a_duplicate_push_gets_the_same_answer_and_no_second_event(
    tmp_path: Path,
) -> None:
    async with compound(tmp_path) as c:
        cam = c.cameras["gate-main-in"]
        first = await cam.read("湘A8B8B8", plate_id="cam-7731")
        again = await cam.read("湘A8B8B8", plate_id="cam-7731")
        assert first.opened and again.opened and first.body == again.body
        assert len(c.events("gate.plate")) == 1
        assert 'gateway_reports_duplicate_total{driver="http_push"} 1.0' in await c.metrics()


async def test_an_offline_replay_is_history_and_never_opens(tmp_path: Path) -> None:
    async with compound(tmp_path) as c:
        for gate in ("gate-main-in", "gate-suv-lot"):
            result = await c.cameras[gate].read("湘A66666", offline=True)
            assert result.status == 200 and not result.opened
        assert [e["offline"] for e in c.events("gate.plate")] == [True, True]
        assert c.audit("decision.%") == [] and c.audit("command.%") == []
        assert all(b.state == "closed" for b in c.barriers.barriers.values())
        assert not c.active("gate.refused")
        text = await c.metrics()
        for gate in ("gate-main-in", "gate-suv-lot"):
            assert f'gateway_gate_decisions_total{{decision="offline",gate="{gate}"}} 1.0' in text
            assert (f'gateway_gate_decisions_total{{decision="opened_confirmed",gate="{gate}"}}'
                    ' 0.0') in text


@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_a_malformed_push_is_refused_counted_and_the_listener_goes_on(
    tmp_path: Path, name: str,
) -> None:
    path, body, ctype = MALFORMED[name]
    async with compound(tmp_path) as c:
        cam = c.cameras["gate-parking-b1" if "hikvision" in path else "gate-main-out"]
        result = await cam.post(path, body, ctype)
        assert result.status == 400
        assert result.json()["reason"] in ("malformed_json", "malformed_xml", "bad_payload")
        assert f'reason="{result.json()["reason"]}"' in await c.metrics()
        assert c.events("gate.plate") == []
        assert (await cam.read("湘A12345")).status == 200  # and the next good one is taken


async def test_unknown_cameras_wrong_secrets_and_oversized_pictures_are_refused(
    tmp_path: Path,
) -> None:
    async with compound(tmp_path) as c:
        cam = c.cameras["gate-main-in"]
        body = vzenith_body("湘A8B8B8", "x-1")
        assert (await cam.post("/push/vzenith", body, "application/json",
                               secret="wrong")).status == 401
        cam.secret = None
        assert (await cam.post("/push/vzenith", body, "application/json")).status == 401
        cam.secret = SECRET
        big = picture(size=200 * 1024)
        refused = await cam.read("湘A8B8B8", picture_bytes=big)
        assert (refused.status, refused.json()["reason"]) == (400, "picture_too_large")
        hik, ctype = hikvision_body("湘A12345", "h-1", pictures=[big])
        refused = await c.cameras["gate-parking-b1"].post("/push/hikvision", hik, ctype)
        assert (refused.status, refused.json()["reason"]) == (400, "picture_too_large")
        # A picture just under the cap, in many TCP segments, is taken whole.
        fits = await c.cameras["gate-parking-b1"].read("湘A12345",
                                                       picture_bytes=picture(size=60 * 1024))
        assert fits.status == 200
        huge = vzenith_body("湘A8B8B8", "x-2", picture_bytes=picture(size=3 * 1024 * 1024))
        assert (await cam.post("/push/vzenith", huge, "application/json")).status == 413
        # A Vzenith push to the Hikvision route, and a camera nobody configured.
        assert (await cam.post("/push/hikvision", b"<x/>", "application/xml")).status == 400
        from simulators.gates import PlateCamera

        async with PlateCamera("intruder", "vzenith", "127.0.0.99",
                               cam.listener) as stranger:
            assert (await stranger.read("湘A8B8B8")).status == 403
        text = await c.metrics()
        for reason in ("bad_secret", "picture_too_large", "too_large", "wrong_vendor",
                       "unknown_camera"):
            assert f'reason="{reason}"' in text
        assert [e["plate"] for e in c.events("gate.plate")] == ["湘A12345"]
        assert (await cam.read("湘A8B8B8")).opened


async def test_a_jammed_barrier_raises_an_alert(tmp_path: Path) -> None:
    async with compound(tmp_path) as c:
        c.barriers.barriers["gate-main-out"].jammed = True
        status, body = await c.post("/api/gates/gate-main-out/open",
                                    {"reason": "stuck car", "operator": "li"})
        assert (status, body["status"]) == (502, "failed")
        assert "commanded open, reads closed" in body["detail"]
        await until(lambda: c.active("gate.jammed"))
        c.barriers.barriers["gate-main-out"].jammed = False
        status, _ = await c.post("/api/gates/gate-main-out/open",
                                 {"reason": "freed", "operator": "li"})
        assert status == 200
        await until(lambda: not c.active("gate.jammed"))
        # A barrier without power answers nothing useful: failed, said, and audited.
        c.barriers.barriers["gate-main-out"].powerless = True
        status, body = await c.post("/api/gates/gate-main-out/open",
                                    {"reason": "again", "operator": "li"})
        assert (status, body["status"]) == (502, "failed")
        assert "the barrier answered 503" in body["detail"]
        assert c.audit("command.open")[-1][3]["status"] == "failed"


async def test_a_passage_without_a_read_is_tailgating(tmp_path: Path) -> None:
    async with compound(tmp_path) as c:
        cam = c.cameras["gate-parking-b1"]
        await cam.read("湘A12345")
        await until(lambda: c.barriers.barriers["gate-parking-b1"].state == "open")
        assert (await cam.loop_passed()).status == 200  # the official car itself
        assert not c.active("gate.tailgate")
        assert (await cam.loop_passed()).status == 200  # and one more behind it
        await until(lambda: c.active("gate.tailgate"))


async def test_heartbeats_keep_a_gate_online_and_silence_takes_it_offline(
    tmp_path: Path,
) -> None:
    async with compound(tmp_path, heartbeat_s=0.4) as c:
        for gate in ("gate-main-in", "gate-parking-b1"):
            assert (await c.cameras[gate].heartbeat()).status == 200
        await until(lambda: {a.source for a in c.gateway.book.active()
                             if a.rule == "device.stale"} >= {"gate-main-in", "gate-suv-lot"})
        assert (await c.cameras["gate-main-in"].heartbeat()).status == 200
        await until(lambda: "gate-main-in" not in {a.source for a in c.gateway.book.active()
                                                   if a.rule == "device.stale"})


class FireModel:
    """Test-only: says `fire.confirmed` (the fire model's contract) on a `test.fire` event."""

    name = "test-fire-model"

    def restore(self, firing: Sequence[Alert]) -> None:
        return None

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> Sequence[Verdict]:
        if isinstance(item, Event) and item.kind == "test.fire":
            return [AlertSignal("fire.confirmed", item.zone, item.zone, Severity.CRITICAL,
                                bool(item.data["active"]), "fire confirmed",
                                {"building": "main", "drill": bool(item.data["drill"])})]
        return []

    def tick(self, now: float) -> Sequence[Verdict]:
        return []


async def _fire(c: Compound, *, active: bool = True, drill: bool = False) -> None:
    ingest = c.gateway.ingest
    await ingest.event(Event("test.fire", "fire-model", seq=ingest.next_seq("fire-model"),
                             time=c.gateway.clock.now(), severity=Severity.CRITICAL,
                             zone="main-gatehouse", data={"active": active, "drill": drill}))
    await ingest.settle()


async def test_a_fire_opens_every_barrier_until_the_desk_releases_them(tmp_path: Path) -> None:
    async with compound(tmp_path, extra_rules=[FireModel()]) as c:
        barriers = c.barriers.barriers
        await _fire(c, drill=True)  # a drill does not open them
        assert c.audit("command.hold_open") == []
        await _fire(c)
        api_gates = ("gate-main-in", "gate-main-out", "gate-parking-b1")
        await until(lambda: all(barriers[g].state == "open" and barriers[g].held
                                for g in api_gates))
        # The Vzenith camera without a gate API is told with its next heartbeat.
        await until(lambda: c.gateway.gates is not None
                    and "gate-suv-lot" in c.gateway.gates.rule_module.holding())  # type: ignore[union-attr]
        while not c.cameras["gate-suv-lot"].told:
            await c.cameras["gate-suv-lot"].heartbeat()
        assert c.cameras["gate-suv-lot"].told == [{"action": "alwaysOpen"}]
        assert c.active("gate.fire_hold")
        # The fire going out does not close them; a car that comes is let through.
        await _fire(c, active=False)
        assert (await c.cameras["gate-main-in"].read("鄂B54321")).opened
        assert all(barriers[g].state == "open" for g in api_gates)
        def results() -> dict[str, str]:
            return {t: d["status"] for _, _, t, d in c.audit("command.hold_open")
                    if d["stage"] == "result"}

        await until(lambda: len(results()) == 4)
        assert results() == {"gate-main-in": "verified", "gate-main-out": "verified",
                           "gate-parking-b1": "verified", "gate-suv-lot": "unverified"}
        status, body = await c.post("/api/gates/release", {"operator": "zhao"})
        assert status == 400
        status, body = await c.post("/api/gates/release",
                                    {"reason": "fire brigade: all clear", "operator": "zhao"})
        assert status == 202 and sorted(body["released"]) == sorted(
            [*api_gates, "gate-suv-lot"])
        await until(lambda: all(barriers[g].state == "closed" for g in api_gates))
        suv = c.cameras["gate-suv-lot"]
        while len(suv.told) < 2:  # the Vzenith camera hears it with its next heartbeat
            await suv.heartbeat()
        assert suv.told[-1] == {"action": "normal"}

        def released() -> dict[str, tuple[str, str]]:
            return {t: (w, d["status"]) for w, _, t, d in c.audit("command.release")
                    if d["stage"] == "result"}

        await until(lambda: len(released()) == 4)
        assert all(w.startswith("zhao via api") for w, _ in released().values())
        assert {t: s for t, (_, s) in released().items()} == {
            "gate-main-in": "verified", "gate-main-out": "verified",
            "gate-parking-b1": "verified", "gate-suv-lot": "unverified"}
        await until(lambda: not c.active("gate.fire_hold"))
        assert (await c.post("/api/gates/release", {"reason": "again", "operator": "zhao"})
                )[0] == 409


async def test_a_barrier_that_does_not_open_in_a_fire_is_retried_then_alerted(
    tmp_path: Path,
) -> None:
    async with compound(tmp_path, extra_rules=[FireModel()]) as c:
        c.barriers.barriers["gate-parking-b1"].jammed = True
        await _fire(c)
        await until(lambda: c.active("gate.linkage_failed"), timeout=20)
        tries = [d for _, _, t, d in c.audit("command.hold_open")
                 if t == "gate-parking-b1" and d["stage"] == "result"]
        assert len(tries) == 3 and all(d["status"] == "failed" for d in tries)
        [failed] = c.active("gate.linkage_failed")
        assert failed.source == "gate-parking-b1" and failed.severity is Severity.CRITICAL


async def test_the_desk_issues_a_visitor_pass_and_the_visitor_is_let_in(tmp_path: Path) -> None:
    async with compound(tmp_path) as c:
        cam = c.cameras["gate-main-in"]
        assert not (await cam.read("粤B20000")).opened
        status, body = await c.post("/api/vehicles/passes", {
            "plate": "粤B 20000", "owner_unit": "市卫健委", "hours": 2,
            "reason": "meeting in room 214", "operator": "wang"})
        assert status == 201 and body["plate"] == "粤B20000"
        assert (await cam.read("粤B20000")).opened  # the rules see the new pass at once
        status, body = await c.post("/api/vehicles/passes", {
            "plate": "湘A99999", "hours": 2, "reason": "r", "operator": "wang"})
        assert status == 422 and "registered as barred" in body["error"]
        assert (await c.post("/api/vehicles/passes", {"plate": "粤B20000"}))[0] == 400
        # Reads of the registry through the API are logged, found or not.
        status, data = await c.get("/api/vehicles/粤B20000?operator=wang")
        assert status == 200 and b'"class": "visitor"' in data
        assert (await c.get("/api/vehicles/鄂A00000?operator=wang"))[0] == 404
        assert c.gateway.gates is not None
        reads = [(e.actor, e.plate, e.detail) for e in c.gateway.gates.registry.audit(10)
                 if e.action == "read"]
        assert [(p, d["found"]) for _, p, d in reads] == [("鄂A00000", False),
                                                          ("粤B20000", True)]
        assert all(a.startswith("wang via api from 127.0.0.1") for a, _, _ in reads)


async def test_occupancy_counts_entries_and_exits_on_the_metrics_page(tmp_path: Path) -> None:
    async with compound(tmp_path) as c:
        assert (await c.cameras["gate-main-in"].read("湘A12345")).opened
        assert (await c.cameras["gate-main-in"].read("湘A8B8B8")).opened
        assert (await c.cameras["gate-main-out"].read("湘A8B8B8")).opened
        await c.cameras["gate-parking-b1"].read("湘A12345")
        await until(lambda: c.barriers.barriers["gate-parking-b1"].state == "open")
        text = await c.metrics()
        assert 'gateway_zone_occupancy{zone="compound"} 1.0' in text
        assert 'gateway_zone_occupancy{zone="main-parking-b1"} 1.0' in text


@pytest.mark.parametrize("gate", ["gate-main-in", "gate-parking-b1"])
async def test_a_read_the_store_cannot_commit_is_never_acknowledged_nor_opened(
    tmp_path: Path, gate: str,
) -> None:
    import sqlite3

    def disk_full() -> None:
        raise sqlite3.OperationalError("database or disk is full")

    async with compound(tmp_path) as c:
        c.gateway.store.inject_fault(disk_full)
        result = await c.cameras[gate].read("湘A12345")
        assert result.status == 503 and not result.opened
        assert "not committed" in result.json()["error"] or "not stored" in result.json()[
            "error"]
        assert c.barriers.barriers[gate].state == "closed"
        c.gateway.store.inject_fault(None)
        assert c.events("gate.plate") == []


async def test_the_desk_page_shows_a_refused_vehicles_plate_and_picture(tmp_path: Path) -> None:
    from tests.test_desk_page import desk_in_chromium

    async with compound(tmp_path) as c:
        await c.cameras["gate-main-in"].read("鄂B54321")
        await until(lambda: c.active("gate.refused"))
        [name] = c.active("gate.refused")[0].data["pictures"]
        async with desk_in_chromium(f"{c.api}/", tmp_path / "profile") as page:
            await page.until("document.querySelector('.plate') !== null")
            assert await page.eval("document.querySelector('.plate').textContent") == "鄂B54321"
            src = await page.eval("document.querySelector('.plate-picture').src")
            assert src == f"{c.api}/api/gates/pictures/{name}"
            assert "车辆未放行" in await page.eval("document.body.textContent")


async def test_two_detectors_in_alarm_confirm_a_fire_and_every_barrier_opens(
    tmp_path: Path, mosquitto: Mosquitto,
) -> None:
    """The whole path: MQTT heat detectors -> fire rules -> the fire model's double knock
    -> `fire.confirmed` -> the vehicle rules -> the commander -> the barriers."""
    async with compound(tmp_path, broker=(mosquitto.host, mosquitto.port)) as c, \
            detectors(mosquitto.host, mosquitto.port) as fleet:
        await until(lambda: all(s.state.value == "up" for s in c.gateway.supervisors))
        barriers = c.barriers.barriers
        await fleet.send("hd-01", 80.0, alarm=True)
        await until(lambda: any(a.rule == "fire.alarm" for a in c.gateway.book.active()))
        assert not c.active("gate.fire_hold")  # one trigger of two
        await fleet.send("hd-02", 80.0, alarm=True)
        api_gates = ("gate-main-in", "gate-main-out", "gate-parking-b1")
        await until(lambda: all(barriers[g].held for g in api_gates))
        assert c.active("gate.fire_hold")
        assert any(a.rule == "fire.confirmed" for a in c.gateway.book.active())
        # The controller on MQTT was told too; its published command confirms the hold.
        await until(lambda: c.db(
            "SELECT 1 FROM events WHERE kind = 'gate.state' AND source = 'gate-health-in'"
            " AND json_extract(data, '$.commanded') = 'hold_open'"
            " AND json_extract(data, '$.status') = 'unverified'"))


async def test_a_gate_controller_over_mqtt_reads_plates_and_takes_commands(
    tmp_path: Path, mosquitto: Mosquitto,
) -> None:
    """A site-side MQTT bridge (the simulated controller): reads in on `<topic>/event`, the
    rules' open out on `<topic>/command` through the commander; offline replays, repeats
    and bad payloads never open."""
    from simulators.gates import MqttGateController
    from tests.gates_site import CONTROLLER_TOPIC

    async with compound(tmp_path, broker=(mosquitto.host, mosquitto.port)) as c, \
            MqttGateController("gate-health-in", CONTROLLER_TOPIC, mosquitto.host,
                               mosquitto.port) as ctl:
        await until(lambda: all(s.state.value == "up" for s in c.gateway.supervisors))
        await ctl.read("湘A12345", plate_id="c-1")
        await until(lambda: ctl.told)
        assert ctl.told[0]["action"] == "open" and "official" in ctl.told[0]["why"]
        assert ctl.barrier.state == "open"
        await ctl.report_state()  # the controller reads its barrier back: open
        await ctl.loop_passed()
        await ctl.read("湘A12345", plate_id="c-1")  # a repeat
        await ctl.read("湘A12345", plate_id="c-2", offline=True)
        await ctl.raw(b"{not json")
        await ctl.raw(b'{"type": "nonsense"}')
        await ctl.read("鄂B54321", plate_id="c-3")
        await until(lambda: [a for a in c.active("gate.refused")
                             if a.source == "gate-health-in"])
        await ctl.heartbeat()
        await ctl.report_state()
        await until(lambda: len(c.events("gate.state")) >= 1)
        assert len(ctl.told) == 1  # nothing else opened
        plates = [(e["plate_id"], e["offline"]) for e in c.events("gate.plate")]
        assert plates == [("c-1", False), ("c-2", True), ("c-3", False)]
        text = await c.metrics()
        assert 'gateway_payloads_rejected_total{driver="mqtt_gate",reason="malformed_json"}' \
            in text
        assert 'reason="bad_payload"' in text
        # The desk opens by hand: the command goes out to the controller, audited.
        status, body = await c.post("/api/gates/gate-health-in/open",
                                    {"reason": "visitor", "operator": "wang"})
        assert (status, body["status"]) == (200, "unverified")
        await until(lambda: len(ctl.told) == 2)
        assert ctl.told[1]["action"] == "open" and ctl.barrier.state == "open"
        # Jammed: it takes the command, stays shut and says so in its next report.
        await ctl.loop_passed()
        assert not c.active("gate.jammed")  # every move so far was the one commanded
        ctl.barrier.jammed = True
        status, _ = await c.post("/api/gates/gate-health-in/open",
                                 {"reason": "visitor", "operator": "wang"})
        assert status == 200
        await until(lambda: len(ctl.told) == 3)

        def told_events() -> int:
            return len(c.db("SELECT 1 FROM events WHERE kind = 'gate.state' AND source ="
                            " 'gate-health-in' AND json_extract(data, '$.commanded') = 'open'"))

        await until(lambda: told_events() == 6)  # "sent" and the result, three times
        await ctl.report_state()  # still closed
        await until(lambda: [a for a in c.active("gate.jammed")
                             if a.source == "gate-health-in"])
        # A registered car at the jammed barrier: opened by the rules, read back closed.
        await ctl.read("湘A12345", plate_id="c-4")
        await until(lambda: len(ctl.told) == 4)
        await until(lambda: told_events() == 8)
        await ctl.report_state()
        metric = 'gateway_gate_decisions_total{{decision="{}",gate="gate-health-in"}} {}'
        await until_async(c.metrics, metric.format("opened_unconfirmed", "1.0"))
        text = await c.metrics()
        # The first read confirmed by the controller's report, the refused one, the jam.
        assert metric.format("opened_confirmed", "1.0") in text
        assert metric.format("refused", "1.0") in text


async def test_occupancy_and_who_is_inside_survive_a_restart(tmp_path: Path) -> None:
    async with compound(tmp_path) as c:
        assert (await c.cameras["gate-main-in"].read("湘A12345")).opened
        assert (await c.cameras["gate-main-in"].read("湘A8B8B8")).opened
        assert not (await c.cameras["gate-main-in"].read("湘A99999")).opened  # barred
        # A visitor let in by hand: unregistered, yet inside.
        assert not (await c.cameras["gate-main-in"].read("鄂B54321")).opened
        status, _ = await c.post("/api/gates/gate-main-in/open",
                                 {"reason": "visitor for room 214", "operator": "wang",
                                  "plate": "鄂B54321"})
        assert status == 200
        await c.cameras["gate-parking-b1"].read("湘A12345")
        await until(lambda: c.barriers.barriers["gate-parking-b1"].state == "open")
        assert (await c.cameras["gate-main-out"].read("湘A8B8B8")).opened
        before = c.gateway.gates.occupancy() if c.gateway.gates else {}
        assert before["compound"] == 2 and before["main-parking-b1"] == 1
    # The same data folder, a new daemon: the counts come back from the stored reads.
    async with compound(tmp_path) as c:
        assert c.gateway.gates is not None and c.gateway.gates.occupancy() == before
        text = await c.metrics()
        assert 'gateway_zone_occupancy{zone="compound"} 2.0' in text
        assert 'gateway_zone_occupancy{zone="main-parking-b1"} 1.0' in text
        # The visitor let in by hand before the restart is let out after it.
        result = await c.cameras["gate-main-out"].read("鄂B54321")
        assert result.opened
        assert c.gateway.gates.occupancy()["compound"] == 1


async def test_a_picture_that_cannot_be_written_does_not_keep_the_barrier_shut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    async with compound(tmp_path) as c:
        assert c.gateway.gates is not None
        day = c.gateway.gates.pictures.name("x", 0, b"", c.gateway.clock.now()).split("/")[0]
        (c.gateway.gates.pictures.folder / day).write_text("not a folder")  # mkdir fails
        with caplog.at_level(logging.ERROR, logger="drivers.http_push"):
            result = await c.cameras["gate-main-in"].read("湘A8B8B8")
        assert result.status == 200 and result.opened
        [plate] = c.events("gate.plate")
        [name] = plate["pictures"]
        assert c.gateway.gates.pictures.path(name) is None
        assert any("plate picture not written" in r.getMessage() for r in caplog.records)
        assert c.gateway.gates.listener is not None
        assert c.gateway.gates.listener.pictures_failed == 1
        # The listener goes on: the next read with its picture folder back is whole.
        (c.gateway.gates.pictures.folder / day).unlink()
        assert (await c.cameras["gate-main-in"].read("湘A12345")).opened
        [_, second] = c.events("gate.plate")
        [name] = second["pictures"]
        assert c.gateway.gates.pictures.path(name) is not None
