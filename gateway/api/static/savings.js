// The savings report per measure, for the facilities staff: what the baseline model
// says would have been used, what was used, the saving in units and yuan, and whether
// the baseline model meets ASHRAE Guideline 14. Reads GET /api/savings; the page's own
// ?baseline=START:END&reporting=START:END are passed on to each measure's report.
"use strict";

const QUANTITIES = {
  energy: ["电", "Electricity"],
  water: ["水", "Water"],
  gas: ["燃气", "Gas"],
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function num(value, digits = 0) {
  return Number(value).toLocaleString("zh-CN", {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  });
}

function pct(value) {
  return `${num(value * 100, 1)} %`;
}

function yuan(value) {
  return `¥${num(value)}`;
}

function periods(query) {
  const out = new URLSearchParams();
  for (const name of ["baseline", "reporting"]) {
    const value = query.get(name);
    if (value) out.set(name, value);
  }
  const text = out.toString();
  return text ? `?${text}` : "";
}

function fitLine(fit) {
  const line = el("p", fit.acceptable ? "fit ok" : "fit bad");
  line.dataset.acceptable = String(fit.acceptable);
  line.textContent =
    `CV(RMSE) ${pct(fit.cv_rmse)} (≤ ${pct(fit.cv_rmse_limit)}) · ` +
    `NMBE ${pct(fit.nmbe)} (±${pct(fit.nmbe_limit)}) · ` +
    (fit.acceptable ? "符合指南14 Meets Guideline 14" : "不符合指南14 Fails Guideline 14");
  return line;
}

function partTable(part) {
  const box = el("div", "part");
  box.dataset.quantity = part.quantity;
  const [zh, en] = QUANTITIES[part.quantity] || [part.quantity, part.quantity];
  const title = el("h3", "", `${zh} `);
  title.append(el("span", "en", `${en} (${part.unit}) · ${part.meters.join(", ")}`));
  box.append(title);
  const table = el("table", "months");
  const head = el("tr");
  for (const [z, e] of [["月份", "Month"], ["调整后基准", "Adjusted baseline"],
                        ["实际用量", "Used"], ["节约", "Saving"]]) {
    const th = el("th", z === "月份" ? "" : "n", z);
    th.append(el("br"), el("span", "en", e));
    head.append(th);
  }
  const thead = el("thead");
  thead.append(head);
  const tbody = el("tbody");
  for (const row of part.reporting) {
    const tr = el("tr");
    tr.dataset.period = row.period;
    tr.append(el("td", "", row.period), el("td", "n", num(row.adjusted_baseline)),
              el("td", "n", num(row.consumption)), el("td", "n saving", num(row.saving)));
    tbody.append(tr);
  }
  const total = el("tr", "total");
  total.append(el("td", "", "合计 Total"), el("td", "n", num(part.adjusted_baseline)),
               el("td", "n", num(part.reported)), el("td", "n saving", num(part.saving)));
  tbody.append(total);
  table.append(thead, tbody);
  const money = el("p", "part-yuan",
                   `节约 Saved ${num(part.saving)} ${part.unit} × ¥${num(part.tariff_yuan, 2)}/${part.unit} = ` +
                   `${yuan(part.saving_yuan)}`);
  box.append(table, money, fitLine(part.fit));
  return box;
}

function measureSection(measure) {
  const section = el("section", "measure");
  section.dataset.measure = measure.id;
  section.append(el("h2", "", measure.name));
  return section;
}

function showReport(section, report) {
  section.append(el("p", "periods",
    `基准期 Baseline ${report.baseline.start} – ${report.baseline.end} · ` +
    `报告期 Reporting ${report.reporting.start} – ${report.reporting.end}`));
  const headline = el("p", "headline");
  headline.append(el("span", "yuan", `${yuan(report.saving_yuan)}`),
                  el("span", "yuan-year", ` · 折合每年 ${yuan(report.saving_yuan_per_year)} a year`));
  if (report.expected_yuan_per_year !== null && report.expected_yuan_per_year !== undefined) {
    headline.append(el("span", "promised",
      ` · 承诺 promised ${yuan(report.expected_yuan_per_year)} a year`));
  }
  section.append(headline);
  for (const part of report.parts) section.append(partTable(part));
}

async function load() {
  const query = periods(new URLSearchParams(window.location.search));
  const box = document.getElementById("measures");
  const loading = document.getElementById("loading");
  let list;
  try {
    const reply = await fetch("/api/savings", { cache: "no-store" });
    list = (await reply.json()).measures;
  } catch (err) {
    loading.textContent = "网关无应答 · The gateway did not answer";
    return;
  }
  if (!list.length) {
    loading.textContent = "站点文件未设节能措施 · The site file names no savings measure";
    return;
  }
  const sections = list.map(measureSection);
  box.append(...sections);
  await Promise.all(list.map(async (measure, i) => {
    const section = sections[i];
    try {
      const reply = await fetch(`/api/savings/${encodeURIComponent(measure.id)}${query}`,
                                { cache: "no-store" });
      const body = await reply.json();
      if (!reply.ok) {
        section.append(el("p", "error", body.error || `HTTP ${reply.status}`));
        return;
      }
      showReport(section, body);
    } catch (err) {
      section.append(el("p", "error", "网关无应答 · The gateway did not answer"));
    }
  }));
  loading.remove();
  document.body.classList.add("loaded");
}

load();
