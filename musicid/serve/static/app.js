// musicid serve's page: plain JS, no build step. Each dropped file goes to POST /query?explain=true;
// the card shows the verdict, every composer's probability, novelty against the threshold, the nearest
// indexed tracks with their clips (and the query's nearest clip) to hear, and the embedding map.
"use strict";

const PALETTE = ["#2f6fdf", "#d97706", "#059669", "#9333ea", "#dc2626", "#0891b2", "#65a30d", "#db2777",
                 "#4b5563", "#7c3aed"];
let indexInfo = null;
let indexMap = null;
const colours = {};
const PART_NAMES = { "track-knn": "embedding distance", "symbolic-knn": "symbolic-feature distance",
                     "background-margin": "background margin",
                     "background-snorm": "background-normalised distance" };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function colour(composer) {
  if (!(composer in colours)) colours[composer] = PALETTE[Object.keys(colours).length % PALETTE.length];
  return colours[composer];
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

async function loadIndex() {
  try {
    [indexInfo, indexMap] = await Promise.all([getJSON("/index"), getJSON("/index/map")]);
    (indexInfo.composers || []).forEach(colour);
    const n = indexInfo.counts ? `${indexInfo.counts.tracks} tracks, ${indexInfo.counts.clips} clips` : "";
    document.getElementById("index-summary").textContent =
      `Index: ${indexInfo.composers.join(", ")} (${n}); novelty threshold ${indexInfo.calibration.threshold.toFixed(4)}.`;
  } catch (e) {
    document.getElementById("index-summary").textContent = `Index not available: ${e.message}`;
  }
}

function audio(url, label) {
  const player = el("audio", { controls: "", preload: "none", src: url, title: label });
  player.dataset.label = label;
  return player;
}

function bars(result) {
  const box = el("div", {}, el("h3", { text: result.classifier === "knn" ? "composer votes" : "composer probabilities" }));
  const order = Object.entries(result.probabilities).sort((a, b) => b[1] - a[1]);
  for (const [composer, p] of order) {
    const row = el("div", { class: "bar" + (composer === result.composer ? " winner" : ""), "data-composer": composer },
      el("span", { text: composer }),
      el("div", { class: "track" }, el("div", { class: "fill", style: `width:${(100 * p).toFixed(1)}%` })),
      el("span", { class: "value", text: p.toFixed(2) }));
    box.append(row);
  }
  return box;
}

function gauge(result) {
  const lo = Math.min(-1, result.novelty, result.threshold) - 0.5;
  const hi = Math.max(result.threshold * 1.6, result.novelty + 0.5, 1);
  const at = (x) => `${(100 * (x - lo) / (hi - lo)).toFixed(1)}%`;
  const scale = el("div", { class: "gauge", title: "green: like the indexed composers; red: past the threshold" },
    el("div", { class: "threshold", style: `left:${at(result.threshold)}`, title: "threshold" },
       el("span", { text: "threshold" })),
    el("div", { class: "score", style: `left:${at(result.novelty)}` }));
  const verdict = result.novel ? "flagged novel" : "known composer";
  // a part is null where it could not be measured (every background composer enrolled): the other decides
  const entries = Object.entries(result.novelty_parts || {});
  const parts = entries.map(([k, v]) => `${PART_NAMES[k] || k} ${v === null ? "not measured" : v.toFixed(3)}`).join(", ");
  const rule = entries.some(([, v]) => v === null) ? "the one measured" : result.novelty_rule === "mean" ? "the mean" : "the larger";
  return el("div", {}, el("h3", { text: "novelty against the threshold" }), scale,
    el("div", { class: "gauge-text novelty", text:
      `novelty ${result.novelty.toFixed(4)} (threshold ${result.threshold.toFixed(4)}) \u2192 ${verdict}` +
      (parts ? `; parts: ${parts} (${rule} of their z-scores)` : "") +
      (result.background_composer && result.novel ? `; of the composers the embedder learnt and this index ` +
        `does not hold, the nearest is ${result.background_composer}` : "") }));
}

function neighbours(result) {
  const ex = result.explain;
  const seconds = Math.min(ex.clip_seconds, 30);
  const table = el("table", { class: "neighbours" },
    el("tr", {}, el("th", { text: "nearest indexed track" }), el("th", { text: "composer" }),
       el("th", { text: "distance" }), el("th", { text: "your clip" }), el("th", { text: "its clip" })));
  result.neighbours.forEach((nb, i) => {
    const info = ex.neighbours[i];
    const mine = `/queries/${ex.upload}/audio?offset=${info.query_offset}&seconds=${seconds}`;
    const theirs = `/tracks/${info.track_id}/audio?offset=${nb.offset}&seconds=${seconds}`;
    table.append(el("tr", { class: "neighbour", "data-track-id": info.track_id },
      el("td", { text: nb.path }), el("td", { text: nb.composer }),
      el("td", { class: "num", text: nb.distance.toFixed(4) }),
      el("td", {}, el("div", { text: `from ${info.query_offset.toFixed(0)} s` }),
         audio(mine, `your file from ${info.query_offset} s`)),
      el("td", {}, el("div", { text: `from ${nb.offset.toFixed(0)} s` }),
         Object.assign(audio(theirs, `${nb.path} from ${nb.offset} s`), { className: "neighbour-audio" }))));
  });
  return el("div", { class: "wide" }, el("h3", { text: "nearest indexed tracks: hear why" }), table);
}

function map(result) {
  const box = el("div", { class: "map" }, el("h3", { text: "on the index's embedding map (PCA of track vectors)" }));
  if (!indexMap || !indexMap.points.length) return box;
  const pts = indexMap.points.concat([{ x: result.explain.map[0], y: result.explain.map[1] }]);
  const xs = pts.map((p) => p.x), ys = pts.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const W = 420, H = 260, pad = 14;
  const sx = (x) => pad + (W - 2 * pad) * (x - x0) / ((x1 - x0) || 1);
  const sy = (y) => H - pad - (H - 2 * pad) * (y - y0) / ((y1 - y0) || 1);
  const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  const near = new Set(result.explain.neighbours.map((n) => n.track_id));
  for (const p of indexMap.points) {
    const dot = svg("circle", { cx: sx(p.x), cy: sy(p.y), r: near.has(p.track_id) ? 4.5 : 3, fill: colour(p.composer),
                                "fill-opacity": near.has(p.track_id) ? 1 : 0.55,
                                stroke: near.has(p.track_id) ? "#111" : "none" });
    const title = svg("title");
    title.textContent = `${p.path} (${p.composer})`;
    dot.append(title);
    plot.append(dot);
  }
  const [qx, qy] = [sx(result.explain.map[0]), sy(result.explain.map[1])];
  const star = svg("path", { class: "query-point", d: `M${qx},${qy - 9} L${qx + 3},${qy - 3} L${qx + 9},${qy - 3} ` +
    `L${qx + 4},${qy + 2} L${qx + 6},${qy + 9} L${qx},${qy + 5} L${qx - 6},${qy + 9} L${qx - 4},${qy + 2} ` +
    `L${qx - 9},${qy - 3} L${qx - 3},${qy - 3} Z`, fill: result.novel ? "#c2410c" : "#111", stroke: "#fff" });
  plot.append(star);
  const legend = el("div", { class: "legend" });
  for (const c of Object.keys(colours)) legend.append(el("span", {}, el("i", { style: `background:${colour(c)}` }), c));
  legend.append(el("span", { text: "\u2605 this file; outlined: its nearest tracks" }));
  box.append(plot, legend);
  return box;
}

function render(card, name, result) {
  card.replaceChildren();
  const verdict = result.novel ? `NOVEL (nearest composer ${result.composer})` : result.composer;
  card.append(el("h2", {}, `${name}: `,
    el("span", { class: "verdict " + (result.novel ? "novel" : "known"), "data-composer": result.composer,
                 text: verdict })));
  const how = result.classifier === "knn" ? "k-NN vote" : "linear probe";
  card.append(el("p", { class: "subtitle", text:
    `composer ${result.composer}, confidence ${result.confidence.toFixed(2)} (${how} over ${result.n_clips} clips)` +
    (result.known_piece ? `; known piece: same notes as ${result.known_piece}` : "") }));
  if (result.disagreement) card.append(el("p", { class: "disagreement", text: `note: ${result.disagreement}` }));
  card.append(el("div", { class: "grid" }, el("div", {}, bars(result), gauge(result)), map(result), neighbours(result)));
  card.classList.add("done");
}

async function queryFile(file) {
  const card = el("section", { class: "result pending", "data-file": file.name },
    el("h2", { text: `${file.name}: ` }), el("p", { class: "subtitle", text: "listening\u2026" }));
  document.getElementById("results").prepend(card);
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const result = await getJSON("/query?explain=true", { method: "POST", body: form });
    render(card, file.name, result);
  } catch (e) {
    card.replaceChildren(el("h2", { text: `${file.name}` }), el("p", { class: "error", text: e.message }));
    card.classList.add("done", "failed");
  }
}

async function queryFiles(files) {
  for (const file of files) await queryFile(file);  // one at a time: the server runs each on its own threads
}

function setUp() {
  const drop = document.getElementById("drop");
  const input = document.getElementById("files");
  input.addEventListener("change", () => { queryFiles([...input.files]); input.value = ""; });
  for (const kind of ["dragenter", "dragover"]) {
    drop.addEventListener(kind, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const kind of ["dragleave", "drop"]) {
    drop.addEventListener(kind, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => queryFiles([...e.dataTransfer.files]));
  loadIndex();
}

setUp();
