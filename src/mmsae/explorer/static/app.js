// mmsae explorer front end: hash routes over the JSON API, no framework.
"use strict";

const main = document.getElementById("main");
let summary = null;

// Every string the server sends comes from stored data (names, captions, modality names, sources), so
// everything put into HTML goes through esc(), ids in links through enc(), and URLs through src().
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const enc = (s) => esc(encodeURIComponent(String(s ?? "")));
const src = (u) => (typeof u === "string" && /^\/(?![\/\\])/.test(u) ? esc(u) : "");  // the server's own paths only
// a row's web address (an imported url): only http(s), shown as a link to follow, never loaded by the page
const href = (u) => (typeof u === "string" && /^https?:\/\/[^\/\\\s]/i.test(u) && !/[\s\x00-\x1f\x7f]/.test(u) ? esc(u) : "");
const extLink = (u) => (href(u) ? `<a href="${href(u)}" target="_blank" rel="noopener noreferrer" data-testid="row-link">${esc(u)}</a>` : "");
const fmt = (v, d = 3) => (v === null || v === undefined ? "–" : typeof v === "number" ? (Math.abs(v) >= 1000 ? v.toFixed(0) : v.toPrecision(d)) : esc(v));
const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(v < 0.001 ? 3 : 2) + "%");
const conceptLink = (j, name) => `<a href="#/concept/${enc(j)}" data-testid="concept-link">#${esc(j)}${name ? " " + esc(name) : ""}</a>`;
const badge = (b) => `<span class="badge ${esc(b)}">${esc(b)}</span>`;

async function api(path) {
  const r = await fetch(path);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || r.statusText));
  return body;
}

function rowCard(r, extra = "", concept = null) {  // extra: HTML, escaped by the caller; concept: its heatmap on the row page
  const img = src(r.image_url) ? `<img src="${src(r.image_url)}" alt="row ${esc(r.row)}" loading="lazy">` : "";
  return `<a class="card" href="#/row/${enc(r.row)}${concept === null ? "" : "?concept=" + enc(concept)}" data-testid="row-card" data-modality="${esc(r.modality)}">${img}
    <div>${src(r.image_url) ? "" : esc(r.label ?? r.text ?? "")}</div><div class="act">${extra}</div></a>`;
}

function params(hash) {
  const i = hash.indexOf("?");
  return new URLSearchParams(i < 0 ? "" : hash.slice(i + 1));
}

// ---- concept index ---------------------------------------------------------------------
const COLS = [
  ["concept", "#", (c) => conceptLink(c.concept, "")],
  ["name", "name", (c) => esc(c.name || "") + (c.terms && c.terms.length > 1 ? ` <span class="muted">${esc(c.terms.slice(1, 4).join(", "))}</span>` : "")],
  ["frequency", "frequency", (c) => pct(c.frequency), "num"],
  ["energy", "energy", (c) => fmt(c.energy), "num"],
  ["modality_score", "modality", (c) => `${fmt(c.modality_score, 2)} ${badge(c.bucket)}`, "num"],
  ["stability", "stability", (c) => fmt(c.stability, 2), "num"],
  ["bridge_mass", "bridge mass", (c) => fmt(c.bridge_mass, 2), "num"],
];

async function viewIndex(p) {
  const st = { sort: p.get("sort") || "frequency", order: p.get("order") || "desc", q: p.get("q") || "", bucket: p.get("bucket") || "", offset: +(p.get("offset") || 0), limit: 50 };
  const qs = new URLSearchParams({ sort: st.sort, order: st.order, q: st.q, bucket: st.bucket, offset: st.offset, limit: st.limit });
  const data = await api("/api/concepts?" + qs);
  const go = (patch) => { const n = { ...st, ...patch }; location.hash = "#/?" + new URLSearchParams({ sort: n.sort, order: n.order, q: n.q, bucket: n.bucket, offset: n.offset }); };
  main.innerHTML = `<h1>Concepts <span class="muted">(${esc(data.total.toLocaleString())} of ${esc(summary.dict_size.toLocaleString())})</span></h1>
    <div class="filters">
      <input id="filter-q" data-testid="filter-q" placeholder="filter by name, term or #" value="${esc(st.q)}">
      <select id="filter-bucket" data-testid="filter-bucket">
        ${["", "image", "text", "bimodal", "dead"].map((b) => `<option value="${b}" ${b === st.bucket ? "selected" : ""}>${b || "all modalities"}</option>`).join("")}
      </select>
    </div>
    <table data-testid="concept-table"><thead><tr>${COLS.map(([k, label, , cls]) => `<th data-key="${k}" data-testid="th-${k}" class="${cls || ""} ${k === st.sort ? "sorted " + esc(st.order) : ""}">${label}</th>`).join("")}</tr></thead>
    <tbody>${data.items.map((c) => `<tr data-testid="concept-row" data-concept="${esc(c.concept)}">${COLS.map(([, , f, cls]) => `<td class="${cls || ""}">${f(c)}</td>`).join("")}</tr>`).join("")}</tbody></table>
    <div class="pager"><button id="prev" ${st.offset === 0 ? "disabled" : ""}>← previous</button>
      <span data-testid="page-info">${data.total ? st.offset + 1 : 0}–${Math.min(st.offset + st.limit, data.total)} of ${esc(data.total)}</span>
      <button id="next" ${st.offset + st.limit >= data.total ? "disabled" : ""}>next →</button></div>`;
  main.querySelectorAll("th").forEach((th) => th.addEventListener("click", () => {
    const k = th.dataset.key;
    go({ sort: k, order: k === st.sort && st.order === "desc" ? "asc" : "desc", offset: 0 });
  }));
  const q = document.getElementById("filter-q");
  let timer = null;
  q.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => go({ q: q.value, offset: 0 }), 300); });
  q.addEventListener("keydown", (e) => { if (e.key === "Enter") { clearTimeout(timer); go({ q: q.value, offset: 0 }); } });
  document.getElementById("filter-bucket").addEventListener("change", (e) => go({ bucket: e.target.value, offset: 0 }));
  document.getElementById("prev").addEventListener("click", () => go({ offset: Math.max(0, st.offset - st.limit) }));
  document.getElementById("next").addEventListener("click", () => go({ offset: st.offset + st.limit }));
  if (st.q) { q.focus(); q.setSelectionRange(q.value.length, q.value.length); }
}

// ---- concept page ----------------------------------------------------------------------
function histogram(h) {
  const W = 360, H = 120, mods = Object.keys(h.counts);
  const n = h.edges.length - 1;
  if (n <= 0) return `<p class="muted">never fires</p>`;
  const max = Math.max(1, ...mods.flatMap((m) => h.counts[m]));
  const colors = { image: "#f58231", text: "#4363d8" }, color = (m) => (Object.hasOwn(colors, m) ? colors[m] : "#888");
  const bw = W / n;
  let bars = "";
  mods.forEach((m, mi) => h.counts[m].forEach((c, i) => {
    const bh = (H - 16) * Math.sqrt(c / max);
    bars += `<rect x="${i * bw + (mi * bw) / mods.length}" y="${H - 14 - bh}" width="${Math.max(1, bw / mods.length - 0.5)}" height="${bh}" fill="${color(m)}"><title>${esc(m)}: ${esc(c)} rows in [${h.edges[i].toPrecision(2)}, ${h.edges[i + 1].toPrecision(2)})</title></rect>`;
  }));
  const legend = mods.map((m) => `<tspan fill="${color(m)}">■ ${esc(m)}</tspan>`).join(" ");
  return `<svg class="hist" data-testid="histogram" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${bars}
    <text x="2" y="${H - 2}" font-size="10">${h.edges[0].toPrecision(2)}</text><text x="${W - 2}" y="${H - 2}" font-size="10" text-anchor="end">${h.edges[n].toPrecision(2)}</text>
    <text x="${W / 2}" y="11" font-size="10" text-anchor="middle">${legend} (log activation, √count)</text></svg>`;
}

async function viewConcept(j) {
  const c = await api(`/api/concepts/${j}`);
  const top = c.top || {};
  const images = top.image || [], texts = top.text || [];
  const others = Object.keys(top).filter((m) => m !== "image" && m !== "text");
  main.innerHTML = `<h1 data-testid="concept-title">Concept #${esc(c.concept)} ${c.name ? "· " + esc(c.name) : '<span class="muted">(unnamed)</span>'}</h1>
    <p class="stats"><span>frequency ${pct(c.frequency)}</span><span>energy ${fmt(c.energy)}</span>
      <span data-testid="modality-score">modality score ${fmt(c.modality_score, 2)} ${badge(c.bucket)}</span>
      <span>stability ${fmt(c.stability, 2)}</span><span>bridge mass ${fmt(c.bridge_mass, 2)}</span></p>
    ${c.terms && c.terms.length ? `<p>top terms: <span data-testid="terms">${c.terms.map(esc).join(", ")}</span></p>` : ""}
    <div class="cols"><section><h2>Top images${summary.patches && images.length ? ' <label class="muted"><input type="checkbox" id="heat-toggle" data-testid="heatmap-toggle"> where it fires (patches)</label>' : ""}</h2>${images.length ? `<div class="grid" data-testid="top-images">${images.map((r) => rowCard(r, "act " + fmt(r.activation), summary.patches ? c.concept : null)).join("")}</div>` : '<p class="muted">none</p>'}</section>
    <section><h2>Top texts</h2>${texts.length ? `<ul class="texts" data-testid="top-texts">${texts.map((r) => `<li><a href="#/row/${enc(r.row)}">${esc(r.text)}</a> <span class="muted">${fmt(r.activation)}</span></li>`).join("")}</ul>` : '<p class="muted">none</p>'}
    ${others.map((m) => `<h2>Top ${esc(m)} rows</h2><ul class="texts">${top[m].map((r) => `<li><a href="#/row/${enc(r.row)}">${esc(r.text)}</a></li>`).join("")}</ul>`).join("")}</section></div>
    <div class="cols"><section><h2>Activation histogram</h2>${histogram(c.histogram)}</section>
    <section><h2>Bridges</h2>${c.bridges.length ? `<ul data-testid="bridges">${c.bridges.map((b) => `<li>${conceptLink(b.concept, b.name)} <span class="muted">(this concept on the ${esc(b.side)} side; score ${fmt(b.score)}${b.significant ? ", significant" : ""})</span></li>`).join("")}</ul>` : '<p class="muted">none among the reported bridges</p>'}
    <h2>Nearest concepts (decoder cosine)</h2><ul data-testid="neighbors">${c.neighbors.map((n) => `<li>${conceptLink(n.concept, n.name)} <span class="muted">${n.cosine.toFixed(3)}</span></li>`).join("")}</ul></section></div>`;
  const toggle = document.getElementById("heat-toggle");
  if (toggle) toggle.addEventListener("change", () => {  // each top picture, or its heatmap for this concept
    main.querySelectorAll('[data-testid="top-images"] .card').forEach((card, i) => {
      const img = card.querySelector("img"), r = images[i];
      if (img && r) img.src = toggle.checked ? `/heatmaps/${enc(c.concept)}/${enc(r.row)}.png` : src(r.image_url);
    });
  });
}

// ---- row page --------------------------------------------------------------------------
const heatButton = (j) => `<button type="button" class="heat-btn" data-concept="${esc(j)}" data-testid="heat-button" title="draw this concept over the picture">heatmap</button>`;

async function viewRow(r, p) {
  const d = await api(`/api/rows/${r}`);
  const maxA = Math.max(1e-9, ...d.concepts.map((c) => c.activation));
  const patches = d.patches && src(d.image_url) ? d.patches : null;  // a patch token of a picture: heatmaps and patch clicks
  const picture = src(d.image_url)
    ? `<img src="${src(d.image_url)}" alt="row ${esc(d.row)}" data-testid="row-image"${patches ? ' class="patchable" title="click a patch to list its concepts"' : ""}>`
    : "";
  main.innerHTML = `<h1 data-testid="row-title">${esc(d.modality)} row ${esc(d.row)} <span class="muted">pair ${esc(d.pair_id)}</span></h1>
    <div class="cols"><section class="big">${picture}
      ${patches ? `<p class="muted" data-testid="heat-caption"></p><div data-testid="patch-concepts"></div>` : ""}
      <p>${esc(d.text)}</p>${href(d.link) ? `<p>${extLink(d.link)}</p>` : ""}${d.source !== d.link ? `<p class="muted">${esc(d.source)}</p>` : ""}
      ${d.extra && typeof d.extra === "object" ? `<table data-testid="row-extra">${Object.entries(d.extra).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(typeof v === "string" ? v : JSON.stringify(v))}</td></tr>`).join("")}</table>` : ""}
      ${d.pair.length ? `<h2>Same pair</h2><div class="grid">${d.pair.map((p) => rowCard(p, esc(p.modality))).join("")}</div>` : ""}</section>
    <section><h2>Top concepts</h2><table data-testid="row-concepts">${d.concepts.map((c) => `<tr><td>${conceptLink(c.concept, c.name)}</td><td><span class="bar" data-width="${(150 * c.activation) / maxA}"></span> ${fmt(c.activation)}</td>${patches ? `<td>${heatButton(c.concept)}</td>` : ""}</tr>`).join("")}</table></section></div>
    <section><h2>Similar ${esc(d.modality)} rows</h2><div class="grid" data-testid="similar">${d.similar.map((s) => rowCard(s, "cos " + s.cosine.toFixed(3))).join("")}</div></section>`;
  // the Content-Security-Policy refuses style attributes in markup, not styles set from a script
  main.querySelectorAll(".bar[data-width]").forEach((b) => { b.style.width = `${+b.dataset.width || 0}px`; });
  if (patches) patchControls(d, patches, p.get("concept"));
}

function patchControls(d, patches, chosen) {
  const img = main.querySelector('[data-testid="row-image"]');
  const caption = main.querySelector('[data-testid="heat-caption"]');
  const list = main.querySelector('[data-testid="patch-concepts"]');
  const [gh, gw] = patches.grid;
  let shown = null;
  const show = (j) => {  // concept j's heatmap over the picture, or (null) the picture itself
    shown = j === null || j === "" || !/^\d+$/.test(String(j)) ? null : String(j);
    img.src = shown === null ? src(d.image_url) : `/heatmaps/${enc(shown)}/${enc(d.row)}.png`;
    caption.innerHTML = shown === null
      ? "click a patch to list its concepts; a concept's <em>heatmap</em> button draws it over the picture"
      : `heatmap of ${conceptLink(shown, "")} over the picture · <a href="#" data-testid="heat-clear">picture only</a>`;
    const clear = caption.querySelector('[data-testid="heat-clear"]');
    if (clear) clear.addEventListener("click", (e) => { e.preventDefault(); show(null); });
  };
  const wire = (root) => root.querySelectorAll(".heat-btn").forEach((b) => b.addEventListener("click", () => show(b.dataset.concept)));
  wire(main);
  show(chosen);
  img.addEventListener("click", async (e) => {
    // the patches cover the picture's centred square where the processor crops (the heatmap is that square), else all of it
    const box = img.getBoundingClientRect(), W = img.naturalWidth, H = img.naturalHeight;
    if (!W || !H || !box.width || !box.height) return;
    const nx = ((e.clientX - box.left) / box.width) * W, ny = ((e.clientY - box.top) / box.height) * H;
    const [cw, ch] = patches.crop ? [Math.min(W, H), Math.min(W, H)] : [W, H];  // a SigLIP processor resizes the whole picture
    const x = Math.floor(((nx - (W - cw) / 2) / cw) * gw), y = Math.floor(((ny - (H - ch) / 2) / ch) * gh);
    if (x < 0 || y < 0 || x >= gw || y >= gh) return;
    try {
      const q = await api(`/api/rows/${enc(d.row)}/patch?` + new URLSearchParams({ y, x }));
      list.innerHTML = `<h2>Patch (${esc(q.cell[0])}, ${esc(q.cell[1])}) <span class="muted">row <a href="#/row/${enc(q.row)}">${esc(q.row)}</a></span></h2>
        ${q.concepts.length ? `<table data-testid="patch-concept-list">${q.concepts.map((c) => `<tr><td>${conceptLink(c.concept, c.name)}</td><td>${fmt(c.activation)}</td><td>${heatButton(c.concept)}</td></tr>`).join("")}</table>` : '<p class="muted">no concept fires on this patch</p>'}`;
    } catch (err) {
      list.innerHTML = `<p class="error">${esc(err.message)}</p>`;
    }
    wire(list);
  });
}

// ---- search ----------------------------------------------------------------------------
async function viewSearch(q) {
  document.getElementById("search-input").value = q;
  const d = await api("/api/search?" + new URLSearchParams({ q }));
  main.innerHTML = `<h1>“${esc(d.query)}”</h1>${d.note ? `<p class="muted">${esc(d.note)}</p>` : ""}
    <div class="cols"><section><h2>Concepts <span class="muted">(${esc(d.method)})</span></h2>
      ${d.concepts.length ? `<ul data-testid="search-concepts">${d.concepts.map((c) => `<li>${conceptLink(c.concept, c.name)} ${c.activation !== null ? `<span class="muted">${fmt(c.activation)}</span>` : '<span class="muted">name match</span>'}</li>`).join("")}</ul>` : '<p class="muted">no concept matches</p>'}</section>
    <section><h2>Rows</h2><div class="grid" data-testid="search-rows">${d.rows.map((r) => rowCard(r, "score " + fmt(r.score))).join("")}</div></section></div>`;
}

async function viewPlots() {
  const plots = await api("/api/plots");
  main.innerHTML = `<h1>Analyses</h1>${plots.length ? `<div class="plots" data-testid="plots">${plots.map((p) => `<h2>${esc(p.name)}</h2><img src="${src(p.url)}" alt="${esc(p.name)}">`).join("")}</div>` : '<p class="muted">no analysis plots in this run folder (run <code>mmsae analyze …</code> into it)</p>'}`;
}

async function route() {
  const h = location.hash || "#/";
  try {
    if (!summary) {
      summary = await api("/api/summary");
      document.getElementById("run-info").textContent = `${summary.arch} · F=${summary.dict_size.toLocaleString()} · ${summary.rows.toLocaleString()} rows · ${summary.model_id}`;
    }
    let m;
    if ((m = h.match(/^#\/concept\/(\d+)/))) await viewConcept(+m[1]);
    else if ((m = h.match(/^#\/row\/(\d+)/))) await viewRow(+m[1], params(h));
    else if (h.startsWith("#/search")) await viewSearch(params(h).get("q") || "");
    else if (h.startsWith("#/plots")) await viewPlots();
    else await viewIndex(params(h));
    document.body.dataset.ready = h;
  } catch (e) {
    main.innerHTML = `<p class="error" data-testid="error">${esc(e.message)}</p>`;
    document.body.dataset.ready = h;
  }
}

document.getElementById("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = document.getElementById("search-input").value.trim();
  if (q) location.hash = "#/search?" + new URLSearchParams({ q });
});
window.addEventListener("hashchange", route);
route();
