// The security desk: active alerts from the gateway's live feed, most severe first.
// The snapshot sent on every (re)connect is the truth; changes are applied on top of it.
"use strict";

const SEVERITY = {
  critical: { rank: 3, zh: "紧急", en: "Critical" },
  major: { rank: 2, zh: "重要", en: "Major" },
  minor: { rank: 1, zh: "次要", en: "Minor" },
  info: { rank: 0, zh: "提示", en: "Info" },
};

const RULES = {
  "fire.static": ["火警", "Fire alarm"],
  "fire.ror": ["火警（温升）", "Fire alarm (rate of rise)"],
  "fire.alarm": ["火警", "Fire alarm"],
  "fire.prewarn": ["火警预警", "Fire pre-warning"],
  "fire.fault": ["消防设备故障", "Fire system fault"],
  "fire.battery_low": ["消防设备电池低", "Fire device battery low"],
  "device.stale": ["设备失联", "Device silent"],
  "device.down": ["设备离线", "Device offline"],
  "elevator.entrapment": ["电梯困人", "Lift entrapment"],
  "elevator.fault": ["电梯故障", "Lift fault"],
  "elevator.fire_return": ["电梯迫降未到位", "Lift not home on fire recall"],
  "elevator.fire_return_failed": ["电梯迫降未到位", "Lift not home on fire recall"],
  "elevator.stopped_outside_landing": ["电梯非平层停梯", "Lift stopped between landings"],
  "elevator.door_opened_while_moving": ["电梯运行中开门", "Lift door opened while running"],
  "elevator.moved_with_door_open": ["电梯开门走梯", "Lift moved with its door open"],
  "elevator.overspeed": ["电梯超速", "Lift overspeed"],
  "elevator.door_stuck_open": ["电梯门无法关闭", "Lift door will not close"],
  "elevator.power_loss": ["电梯停电", "Lift power loss"],
  "elevator.out_of_service": ["电梯停用", "Lift out of service"],
  "elevator.inspection": ["电梯检修", "Lift in inspection"],
  "elevator.maintenance_overdue": ["电梯维保超期", "Lift maintenance overdue"],
  "elevator.site_inspection_overdue": ["电梯月检超期", "Lift monthly inspection overdue"],
  "fire.confirmed": ["火灾确认", "Fire confirmed"],
  "fire.point.fire": ["火警（报警点）", "Fire alarm (panel point)"],
  "fire.point.fault": ["消防点位故障", "Fire point fault"],
  "fire.point.isolated": ["消防点位屏蔽", "Fire point isolated"],
  "fire.point.supervisory": ["消防监管报警", "Fire supervisory signal"],
  "fire.point.power_fault": ["消防点位电源故障", "Fire point power fault"],
  "fire.point.test": ["消防点位测试", "Fire point in test"],
  "fire.panel.main_power": ["消防主电故障", "Fire panel mains fault"],
  "fire.panel.backup_power": ["消防备电故障", "Fire panel backup power fault"],
  "fire.panel.bus_fault": ["消防总线故障", "Fire panel bus fault"],
  "fire.panel.manual": ["消防控制器手动", "Fire panel in manual"],
  "water.leak": ["疑似漏水", "Suspected water leak"],
  "camera.stream.down": ["视频中断", "Camera stream down"],
  "camera.stream_lost": ["视频中断", "Camera stream lost"],
  "camera.low_fps": ["视频帧率低", "Camera frame rate low"],
  "camera.picture_black": ["视频黑屏", "Camera picture black"],
  "camera.picture_blank": ["视频无图像", "Camera picture blank"],
  "camera.picture_covered": ["镜头遮挡", "Camera covered"],
  "camera.picture_blurred": ["视频模糊", "Camera picture blurred"],
  "camera.picture_frozen": ["画面冻结", "Camera picture frozen"],
  "camera.picture_moved": ["摄像机移位", "Camera moved"],
  "gate.refused": ["车辆未放行", "Vehicle not let in"],
  "gate.jammed": ["道闸未动作", "Barrier did not move"],
  "gate.held_open": ["道闸长时间开启", "Barrier held open"],
  "gate.tailgate": ["跟车通过", "Passage without a read"],
  "gate.overstay": ["访客超时", "Visitor overstay"],
  "gate.fire_hold": ["火灾：道闸常开", "Fire: barriers held open"],
  "gate.linkage_failed": ["火灾：道闸未打开", "Fire: barrier not open"],
};

const FAMILIES = {
  fire: ["消防", "Fire system"],
  elevator: ["电梯", "Lift"],
  camera: ["视频", "Camera"],
  gate: ["道闸", "Gate"],
  water: ["给水", "Water"],
  energy: ["能耗", "Energy"],
  device: ["设备", "Device"],
};

const alerts = new Map(); // id -> alert (as Alert.to_json())
let source = null;
let keepaliveMs = 15000;
let lastHeard = 0;

function isFireAlarm(a) {
  return a.rule.startsWith("fire.") && a.severity === "critical";
}

// Real fire alarms on top; a drill never outranks a real alert of the same severity.
function compare(a, b) {
  const fa = isFireAlarm(a) && !a.drill ? 0 : 1;
  const fb = isFireAlarm(b) && !b.drill ? 0 : 1;
  if (fa !== fb) return fa - fb;
  const sa = (SEVERITY[a.severity] || SEVERITY.info).rank;
  const sb = (SEVERITY[b.severity] || SEVERITY.info).rank;
  if (sa !== sb) return sb - sa;
  if (a.drill !== b.drill) return a.drill ? 1 : -1;
  return b.raised_at - a.raised_at;
}

function ruleLabel(rule) {
  const known = RULES[rule] || FAMILIES[rule.split(".")[0]];
  return known || [rule, ""];
}

function pad(n) {
  return String(n).padStart(2, "0");
}

function localTime(seconds) {
  const d = new Date(seconds * 1000);
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return hms;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms}`;
}

function age(seconds) {
  const s = Math.max(0, Math.floor(Date.now() / 1000 - seconds));
  if (s < 60) return `${s} 秒前 · ${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} 分钟前 · ${m} min ago`;
  const h = Math.floor(m / 60);
  return `${h} 小时 ${m % 60} 分前 · ${h} h ${m % 60} min ago`;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// A refused vehicle: its plate and the camera's picture, so the desk can decide.
function gateDetail(what, data) {
  if (typeof data.plate === "string" && data.plate) {
    what.append(el("span", "plate", data.plate));
  }
  const pictures = Array.isArray(data.pictures) ? data.pictures : [];
  for (const name of pictures.slice(0, 1)) {
    const img = el("img", "plate-picture");
    img.src = `/api/gates/pictures/${encodeURI(name)}`;
    img.alt = "车牌照片 plate picture";
    what.append(img);
  }
}

// ---- Camera snapshots: an alert's thumbnails, each a link to its full JPEG -------------

// An alarm's JPEG is made a moment after the alert: until then its URL answers 404.
const SNAPSHOT_RETRIES = 10;

function snapshotThumb(url, camera) {
  const link = el("a", "snapshot");
  link.href = url;
  link.target = "_blank";
  link.rel = "noopener";
  link.dataset.camera = camera;
  const img = el("img");
  img.alt = `${camera} 抓拍 snapshot`;
  let tries = 0;
  img.addEventListener("error", () => {
    tries += 1;
    if (tries <= SNAPSHOT_RETRIES) setTimeout(() => { img.src = `${url}?try=${tries}`; }, 1000);
  });
  img.src = url;
  link.append(img, el("span", "en", camera));
  return link;
}

function snapshotStrip(shots) {
  if (!Array.isArray(shots)) return null;
  const strip = el("span", "snapshots");
  for (const s of shots) {
    if (s && typeof s.url === "string" && s.url.startsWith("/api/snapshots/")) {
      strip.append(snapshotThumb(s.url, String(s.camera || "")));
    }
  }
  return strip.childElementCount ? strip : null;
}

function row(a) {
  const tr = el("tr");
  tr.dataset.alertId = a.id;
  if (isFireAlarm(a) && !a.drill) tr.classList.add("fire");
  if (a.drill) tr.classList.add("drill");

  const sev = SEVERITY[a.severity] || SEVERITY.info;
  const sevCell = el("td");
  sevCell.append(el("span", `badge sev-${a.severity}`, `${sev.zh} ${sev.en}`));
  tr.append(sevCell);

  const [zh, en] = ruleLabel(a.rule);
  const what = el("td");
  what.append(document.createTextNode(zh + " "), el("span", "en", en));
  if (a.drill) what.append(el("span", "drill-badge", "演习 DRILL"));
  if (a.summary) what.append(el("span", "summary", a.summary));
  if (a.rule.startsWith("gate.")) gateDetail(what, a.data || {});
  const shots = snapshotStrip((a.data || {}).snapshots);
  if (shots) what.append(shots);
  tr.append(what);

  tr.append(el("td", "", a.zone_name || a.zone || "-"));
  tr.append(el("td", "", a.source));

  const when = el("td", "time", localTime(a.raised_at));
  const ago = el("span", "age", age(a.raised_at));
  ago.dataset.raisedAt = a.raised_at;
  when.append(ago);
  tr.append(when);
  return tr;
}

function render() {
  const list = [...alerts.values()].sort(compare);
  document.getElementById("rows").replaceChildren(...list.map(row));
  document.getElementById("empty").classList.toggle("shown", list.length === 0);

  const counts = document.getElementById("counts");
  counts.replaceChildren();
  for (const [name, sev] of Object.entries(SEVERITY)) {
    const n = list.filter((a) => a.severity === name).length;
    if (n) counts.append(el("span", `count sev-${name}`, `${sev.zh} ${n}`));
  }
  const fire = list.some((a) => isFireAlarm(a) && !a.drill);
  document.getElementById("banner").classList.toggle("fire", fire);
  document.title = fire ? "火警 FIRE ALARM · 安防值班台" : "安防值班台 Security desk";
  standingSoon(); // an alert changed: the lifts and risks may have too
}

function setLive(live) {
  document.body.classList.toggle("offline", !live);
  document.getElementById("link-text").textContent = live
    ? "已连接 Live"
    : "连接中断 Link lost";
}

function heard() {
  lastHeard = Date.now();
  setLive(true);
}

function connect() {
  if (source) source.close();
  source = new EventSource("/api/alerts/stream");
  lastHeard = Date.now();
  source.addEventListener("snapshot", (e) => {
    const data = JSON.parse(e.data);
    if (data.keepalive) keepaliveMs = data.keepalive * 1000;
    alerts.clear();
    for (const a of data.active) alerts.set(a.id, a);
    heard();
    render();
  });
  source.addEventListener("alert", (e) => {
    const { change, alert } = JSON.parse(e.data);
    if (change === "cleared") alerts.delete(alert.id);
    else alerts.set(alert.id, alert);
    heard();
    render();
  });
  source.addEventListener("ping", heard);
  // EventSource retries by itself; until the next snapshot arrives the list may be stale.
  source.addEventListener("error", () => setLive(false));
}

function tick() {
  const now = new Date();
  document.getElementById("clock").textContent =
    `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}`;
  for (const node of document.querySelectorAll(".age")) {
    node.textContent = age(Number(node.dataset.raisedAt));
  }
  // A link black-holed without a reset never fires `error`: missing pings give it away.
  if (Date.now() - lastHeard > keepaliveMs * 2.5) {
    setLive(false);
    connect();
  }
}

// ---- The lifts and the standing fire risks, read from the lift and fire API ----------

const DIRECTIONS = {
  up: ["↑ 上行", "Up"],
  down: ["↓ 下行", "Down"],
  none: ["停", "Stopped"],
  unknown: ["?", "Unknown"],
};

const MODES = {
  normal: ["正常", "Normal"],
  inspection: ["检修", "Inspection"],
  out_of_service: ["停用", "Out of service"],
  fire_return: ["消防返回", "Fire return"],
  firefighter: ["消防员操作", "Firefighter"],
  unknown: ["未知模式", "Unknown mode"],
};

const POINT_KINDS = {
  detector: ["探测器", "detector"],
  manual_call_point: ["手动报警按钮", "manual call point"],
  module: ["模块", "module"],
};

const STANDING_EVERY_MS = 2000;
let standingBusy = false;
let standingQueued = false;

function bilingual(node, [zh, en]) {
  node.append(document.createTextNode(`${zh} `), el("span", "en", en));
  return node;
}

function floorName(floor) {
  if (typeof floor !== "number") return "?";
  return floor < 0 ? `B${-floor}` : String(floor);
}

// A box gone quiet: what the row shows is only the last thing it said.
function liftSilent(id) {
  for (const a of alerts.values()) {
    if (a.source === id && (a.rule === "device.stale" || a.rule === "device.down")) return true;
  }
  return false;
}

function liftState(lift, s) {
  const alerts = lift.alerts || [];
  if (alerts.includes("elevator.entrapment")) return ["困人", "TRAPPED"];
  if (liftSilent(lift.lift)) return ["失联（最后状态）", "Silent: last known state"];
  if (s.power_loss) return ["停电", "Power lost"];
  if (alerts.includes("elevator.fire_return_failed")) return ruleLabel("elevator.fire_return_failed");
  if (s.fault) return [`故障 ${s.fault}`, "Fault"];
  if (alerts.includes("elevator.stopped_outside_landing")) {
    return ruleLabel("elevator.stopped_outside_landing");
  }
  const mode = MODES[s.mode] || [s.mode, ""];
  if (s.technician) return [`${mode[0]} · 维保人员在场`, `${mode[1]} · technician on site`];
  return mode;
}

function liftRow(lift) {
  const tr = el("tr");
  tr.dataset.lift = lift.lift;
  const s = lift.status;
  tr.append(el("td", "", lift.lift), el("td", "", lift.building_name || lift.building));
  if (!s) {
    tr.classList.add("silent");
    const cell = el("td");
    cell.colSpan = 4;
    tr.append(bilingual(cell, ["无数据", "No data yet"]));
    return tr;
  }
  if (!lift.available) tr.classList.add("unavailable");
  if (liftSilent(lift.lift)) tr.classList.add("silent");
  if ((lift.alerts || []).includes("elevator.entrapment")) tr.classList.add("trapped");
  tr.append(el("td", "floor", floorName(s.floor)));
  tr.append(bilingual(el("td", "direction"), DIRECTIONS[s.direction] || DIRECTIONS.unknown));
  const door = s.door_open ? ["开", "Open"] : ["关", "Closed"];
  const doorCell = bilingual(el("td", "door"), door);
  if (!s.door_zone) doorCell.append(el("span", "en landing", "非平层 between landings"));
  tr.append(doorCell);
  tr.append(bilingual(el("td", "state"), liftState(lift, s)));
  return tr;
}

function since(node, seconds) {
  node.append(document.createTextNode(` ${localTime(seconds)}`));
  const ago = el("span", "age", age(seconds));
  ago.dataset.raisedAt = seconds;
  node.append(ago);
  return node;
}

function noneItem() {
  return bilingual(el("li", "none"), ["无", "None"]);
}

function isolationItems(view) {
  const items = [];
  for (const zone of view.zones || []) {
    for (const p of zone.isolated || []) {
      const li = el("li");
      li.dataset.point = p.point;
      li.append(el("span", "zone", zone.zone_name || zone.zone));
      li.append(document.createTextNode(`${p.name || p.point} `));
      const kind = POINT_KINDS[p.kind];
      if (kind) li.append(el("span", "en", `${kind[0]} ${kind[1]}`));
      if (p.drill) li.append(el("span", "drill-badge", "演习 DRILL"));
      items.push(since(li, p.since));
    }
  }
  return items.length ? items : [noneItem()];
}

function panelFaultItems(view) {
  const items = (view.panel_faults || []).map((f) => {
    const li = el("li");
    li.dataset.rule = f.rule;
    li.dataset.source = f.source;
    li.append(el("span", "zone", f.zone_name || f.zone || "-"));
    bilingual(li, ruleLabel(f.rule));
    li.append(document.createTextNode(` ${f.source}`));
    return since(li, f.since);
  });
  return items.length ? items : [noneItem()];
}

async function fetchJson(path) {
  const reply = await fetch(path, { cache: "no-store" });
  if (!reply.ok) return null; // a gateway without lifts or a fire panel: no panel
  return reply.json();
}

// ---- The cameras: stream and picture state, a snapshot on demand, a new reference ------

const STREAMS = {
  up: ["在线", "Up"],
  degraded: ["帧率低", "Degraded"],
  down: ["离线", "Down"],
  stale: ["失联", "Silent"],
};

const PICTURES = {
  ok: ["正常", "OK"],
  black: ["黑屏", "Black"],
  blank: ["无图像", "Blank"],
  covered: ["遮挡", "Covered"],
  blurred: ["模糊", "Blurred"],
  frozen: ["冻结", "Frozen"],
  moved: ["移位", "Moved"],
};

const takenSnapshots = new Map(); // camera -> URL of the last snapshot taken from this desk

function cameraRow(cam) {
  const tr = el("tr");
  tr.dataset.camera = cam.id;
  tr.append(el("td", "", cam.id), el("td", "", cam.zone_name || cam.zone));
  const stream = bilingual(el("td", "stream"), STREAMS[cam.stream] || [cam.stream, ""]);
  if (cam.stream !== "up") stream.classList.add("bad");
  const picture = bilingual(el("td", "picture"), PICTURES[cam.picture] || [cam.picture, ""]);
  if (cam.picture !== "ok") picture.classList.add("bad");
  const actions = el("td", "actions");
  const take = el("button", "take", "抓拍 Snapshot");
  take.dataset.action = "snapshot";
  actions.append(take);
  if (cam.picture === "moved") {
    const retake = el("button", "retake", "设为基准 New reference");
    retake.dataset.action = "reference";
    actions.append(retake);
  }
  const url = takenSnapshots.get(cam.id);
  if (url) actions.append(snapshotThumb(url, cam.id));
  tr.append(stream, picture, actions);
  return tr;
}

function cameraNote(text) {
  document.getElementById("camera-note").textContent = text;
}

// Both actions are audited under the operator's name and the reason given here.
async function cameraAction(camera, action) {
  const operator = document.getElementById("operator").value.trim();
  const reason = document.getElementById("reason").value.trim();
  if (!operator || !reason) {
    cameraNote("请先填写值班员和原因 · Operator and reason first");
    return;
  }
  cameraNote(`${camera} …`);
  let reply = null;
  let body = {};
  try {
    reply = await fetch(`/api/cameras/${encodeURIComponent(camera)}/${action}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ operator, reason }),
    });
    body = await reply.json();
  } catch (e) {
    body = {};
  }
  if (!reply || !reply.ok) {
    cameraNote(`${camera}: ${body.error || "失败 failed"}`);
    return;
  }
  if (action === "snapshot") takenSnapshots.set(camera, body.url);
  cameraNote(action === "snapshot" ? `${camera}: 已抓拍 snapshot taken`
    : `${camera}: 已设为基准 new reference`);
  refreshStanding();
}

function onCameraClick(e) {
  const button = e.target.closest("button[data-action]");
  const tr = button && button.closest("tr[data-camera]");
  if (tr) cameraAction(tr.dataset.camera, button.dataset.action);
}

async function refreshStanding() {
  if (standingBusy) {
    standingQueued = true;
    return;
  }
  standingBusy = true;
  try {
    const [lifts, risks, cameras] = await Promise.all([
      fetchJson("/api/lifts").catch(() => undefined),
      fetchJson("/api/fire/isolations").catch(() => undefined),
      fetchJson("/api/cameras").catch(() => undefined),
    ]);
    if (cameras !== undefined) {
      const list = (cameras && cameras.cameras) || [];
      document.getElementById("camera-rows").replaceChildren(...list.map(cameraRow));
      document.getElementById("cameras-panel").hidden = list.length === 0;
    }
    // undefined: the link failed, keep what is shown; null: this gateway has no such view.
    if (lifts !== undefined) {
      const list = (lifts && lifts.lifts) || [];
      document.getElementById("lift-rows").replaceChildren(...list.map(liftRow));
      document.getElementById("lifts-panel").hidden = list.length === 0;
    }
    if (risks !== undefined) {
      document.getElementById("risks-panel").hidden = !risks;
      if (risks) {
        document.getElementById("isolations").replaceChildren(...isolationItems(risks));
        document.getElementById("panel-faults").replaceChildren(...panelFaultItems(risks));
      }
    }
    document.getElementById("standing").hidden =
      document.getElementById("lifts-panel").hidden && document.getElementById("risks-panel").hidden
      && document.getElementById("cameras-panel").hidden;
  } finally {
    standingBusy = false;
    if (standingQueued) {
      standingQueued = false;
      refreshStanding();
    }
  }
}

function standingSoon() {
  refreshStanding();
}

document.getElementById("camera-rows").addEventListener("click", onCameraClick);
connect();
tick();
setInterval(tick, 1000);
refreshStanding();
setInterval(refreshStanding, STANDING_EVERY_MS);
