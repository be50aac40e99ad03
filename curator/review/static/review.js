// curator review: keyboard-first labeling. Plain JavaScript, no build step.
// Every decision goes to the server at once (POST /api/label) and the page moves on; the
// queues themselves are computed by the server (db/queues.py), never here.
"use strict";

const PAGE = 200;
const params = new URLSearchParams(location.search);
// A token in the address has already set this server's cookie: keep it out of the history.
const token = params.get("token");
if (token !== null) {
  params.delete("token");
  history.replaceState(null, "", params.toString() ? `?${params}` : location.pathname);
}

const S = {
  classes: [], keys: {}, author: "", queues: {},
  queue: params.get("queue") || "new",
  items: [], next: 0, loading: false,
  pos: 0,                    // focus view: the image shown
  view: params.get("view") === "grid" ? "grid" : "focus",
  cursor: 0, selected: new Set(), anchor: null,   // grid view
  undo: [],                  // stack of {events: [...], ids: [...]}
  explain: false,            // focus view: show the model's Grad-CAM instead of the picture
};

const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const headers = {"Accept": "application/json"};
  if (token) headers["X-Curator-Token"] = token;
  const options = {headers};
  if (body !== undefined) {
    options.method = "POST";
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

function toast(text, error = false) {
  const t = $("toast");
  t.textContent = text;
  t.className = "show" + (error ? " error" : "");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ""; }, error ? 4000 : 1400);
}

const thumb = (item) => `/thumbs/${item.sha256}.jpg`;
const original = (item) => `/originals/${item.sha256}`;
const explained = (item) => `/api/explain/${item.id}.png`;

// -- loading ---------------------------------------------------------------------------------

async function loadState() {
  const state = await api("/api/state");
  Object.assign(S, {classes: state.classes, keys: state.keys, author: state.author,
                    queues: state.queues});
  if (!params.get("queue")) S.queue = state.queue;
  $("who").textContent = `labeling as ${state.author}`;
  renderQueues();
  renderLegend();
}

async function loadQueue() {
  S.items = []; S.next = 0; S.pos = 0; S.cursor = 0; S.selected.clear(); S.anchor = null;
  await loadMore();
  render();
}

async function loadMore() {
  if (S.loading || S.next === null) return;
  S.loading = true;
  try {
    const page = await api(`/api/queue/${encodeURIComponent(S.queue)}?limit=${PAGE}&after=${encodeURIComponent(S.next)}`);
    S.items.push(...page.items);
    S.next = page.next;
  } catch (e) {
    toast(e.message, true);
    S.next = null;
  } finally {
    S.loading = false;
  }
}

async function refreshCounts() {
  try {
    S.queues = (await api("/api/state")).queues;
    renderQueues();
  } catch (e) { /* counts are a nicety */ }
}

// -- deciding --------------------------------------------------------------------------------

async function decide(indices, label) {
  const items = indices.map((i) => S.items[i]).filter(Boolean);
  if (!items.length) return false;
  try {
    const result = await api("/api/label", {ids: items.map((it) => it.id), label});
    applyLabels(result.labels);
    S.undo.push({events: result.events, ids: items.map((it) => it.id)});
    const word = label === null ? "cleared" : label;
    toast(items.length > 1 ? `${items.length} images: ${word}` : word);
    refreshCounts();
    return true;
  } catch (e) {
    toast(e.message, true);
    return false;
  }
}

async function undo() {
  const last = S.undo.pop();
  if (!last) { toast("nothing to undo"); return; }
  try {
    const result = await api("/api/undo", {events: last.events});
    applyLabels(result.labels);
    if (result.skipped.length) toast(`${result.skipped.length} changed since: left as they are`, true);
    else toast("undone");
    const first = S.items.findIndex((it) => it.id === last.ids[0]);
    if (first >= 0) { S.pos = first; S.cursor = first; }
    render();
    refreshCounts();
  } catch (e) {
    S.undo.push(last);
    toast(e.message, true);
  }
}

async function separate(indices) {
  // Splitting cannot be undone from this page: ask for the key twice.
  const now = Date.now();
  if (!separate.armed || now - separate.armed > 2500) {
    separate.armed = now;
    toast("press n again to split: these near copies are different pictures");
    return false;
  }
  separate.armed = 0;
  const items = indices.map((i) => S.items[i]).filter((it) => it && it.duplicates.length);
  try {
    let count = 0;
    for (const item of items) {
      count += (await api("/api/separate", {id: item.id})).separated.length;
      item.duplicates = [];
    }
    toast(count ? `${count} images now stand alone` : "nothing to split here");
    refreshCounts();
    return true;
  } catch (e) {
    toast(e.message, true);
    return false;
  }
}

function applyLabels(labels) {
  for (const item of S.items) {
    const now = labels[String(item.id)];
    if (now) { item.label = now.label; item.origin = now.origin; }
  }
}

// -- rendering -------------------------------------------------------------------------------

function chip(el, item) {
  el.className = "chip";
  if (!item || !item.label) { el.textContent = "no label"; return; }
  el.textContent = `${item.label} · ${item.origin}`;
  if (item.origin === "human") el.classList.add("human");
  if (item.label === "reject") el.classList.add("reject");
}

function renderQueues() {
  const nav = $("queues");
  nav.replaceChildren();
  for (const [name, count] of Object.entries(S.queues)) {
    const b = document.createElement("button");
    b.textContent = count === null ? name : `${name} ${count}`;
    b.dataset.queue = name;
    b.disabled = count === null;
    b.title = count === null ? "needs a model's predictions: run curator score" : "";
    b.setAttribute("aria-pressed", String(name === S.queue));
    b.onclick = () => switchQueue(name);
    nav.append(b);
  }
}

function renderLegend() {
  const byLabel = {};
  for (const [key, label] of Object.entries(S.keys)) (byLabel[label] ||= []).push(key);
  const lines = Object.entries(byLabel).map(([label, keys]) =>
    `<li>${keys.map((k) => `<kbd>${k}</kbd>`).join(" ")} ${escapeHtml(label)}</li>`);
  lines.push("<li><kbd>s</kbd> skip</li><li><kbd>z</kbd> undo</li>",
             "<li><kbd>←</kbd> <kbd>→</kbd> move</li>",
             "<li><kbd>n</kbd> <kbd>n</kbd> split a near-duplicate group</li>",
             "<li><kbd>e</kbd> why the model decided (Grad-CAM)</li>",
             "<li><kbd>?</kbd> all keys</li>");
  $("legend").innerHTML = lines.join("");
  $("help-keys").innerHTML = `<ul>${lines.join("")}</ul>`;
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
                                           '"': "&quot;", "'": "&#39;"}[c]));
}

function render() {
  $("focus").hidden = S.view !== "focus";
  $("grid").hidden = S.view !== "grid";
  $("view-focus").setAttribute("aria-pressed", String(S.view === "focus"));
  $("view-grid").setAttribute("aria-pressed", String(S.view === "grid"));
  if (S.view === "focus") renderFocus(); else renderGrid();
}

function renderFocus() {
  const item = S.items[S.pos];
  $("empty").hidden = Boolean(item);
  $("big").hidden = !item;
  document.body.dataset.imageId = item ? item.id : "";
  if (!item) {
    $("image-id").textContent = ""; chip($("current-label"), null);
    $("strip").replaceChildren(); $("group").textContent = ""; $("prediction").textContent = "";
    return;
  }
  $("big").src = S.explain ? explained(item) : original(item);
  $("big").alt = S.explain ? `Grad-CAM of image ${item.id}` : `image ${item.id}`;
  $("big").dataset.explain = String(S.explain);
  $("image-id").textContent = `#${item.id} · ${item.width} × ${item.height} · ${item.split} · ` +
    `${S.pos + 1} of ${S.items.length}${S.next === null ? "" : "+"}`;
  chip($("current-label"), item);
  $("prediction").textContent = item.prediction
    ? `model: ${item.prediction.label} (${Math.round(item.prediction.confidence * 100)} %)` : "";
  const group = $("group");
  group.replaceChildren();
  if (item.duplicates.length) {
    group.textContent = `${item.duplicates.length} near copies: labeled with it`;
  }
  const strip = $("strip");
  strip.replaceChildren();
  for (let i = Math.max(0, S.pos - 5); i < Math.min(S.items.length, S.pos + 14); i++) {
    const img = document.createElement("img");
    img.src = thumb(S.items[i]);
    img.alt = "";
    img.className = (i === S.pos ? "here " : "") + (S.items[i].origin === "human" ? "labeled" : "");
    img.onclick = () => { S.pos = i; render(); };
    strip.append(img);
  }
  for (let i = 1; i <= 3; i++) {           // the next images are ready before they are needed
    const next = S.items[S.pos + i];
    if (next) new Image().src = original(next);
  }
}

function renderGrid() {
  const tiles = $("tiles");
  tiles.replaceChildren();
  S.items.forEach((item, i) => {
    const tile = document.createElement("div");
    tile.className = "tile" + (i === S.cursor ? " cursor" : "") + (S.selected.has(i) ? " selected" : "");
    tile.dataset.index = i;
    tile.dataset.imageId = item.id;
    const img = document.createElement("img");
    img.src = thumb(item);
    img.alt = `image ${item.id}`;
    img.loading = "lazy";
    const label = document.createElement("span");
    chip(label, item);
    tile.append(img, label);
    if (item.duplicates.length) {
      const dups = document.createElement("span");
      dups.className = "dups";
      dups.textContent = `+${item.duplicates.length}`;
      dups.title = "near copies in this group, labeled with it";
      tile.append(dups);
    }
    tile.onclick = (event) => clickTile(i, event);
    tile.ondblclick = () => { S.pos = i; S.view = "focus"; render(); };
    tiles.append(tile);
  });
  const n = S.selected.size;
  $("grid-status").textContent = n
    ? `${n} selected: a class key labels them all · Esc clears`
    : `${S.items.length} images${S.next === null ? "" : " (more below)"} · space selects · ` +
      "a class key labels the image under the cursor";
  const current = tiles.children[S.cursor];
  if (current) current.scrollIntoView({block: "nearest"});
}

function clickTile(i, event) {
  if (event.shiftKey && S.anchor !== null) selectRange(S.anchor, i);
  else if (event.ctrlKey || event.metaKey) toggle(i);
  else { S.selected.clear(); S.selected.add(i); S.anchor = i; }
  S.cursor = i;
  renderGrid();
}

function toggle(i) {
  if (S.selected.has(i)) S.selected.delete(i); else S.selected.add(i);
  S.anchor = i;
}

function selectRange(a, b) {
  S.selected.clear();
  for (let i = Math.min(a, b); i <= Math.max(a, b); i++) S.selected.add(i);
}

function columns() {
  const tiles = $("tiles").children;
  if (tiles.length < 2) return 1;
  const top = tiles[0].offsetTop;
  let n = 0;
  while (n < tiles.length && tiles[n].offsetTop === top) n++;
  return Math.max(1, n);
}

// -- moving ----------------------------------------------------------------------------------

async function advance() {
  S.pos = Math.min(S.pos + 1, S.items.length);
  if (S.items.length - S.pos < 20) await loadMore();
  render();
}

async function moveCursor(delta, extend) {
  const next = Math.max(0, Math.min(S.items.length - 1, S.cursor + delta));
  if (extend) {
    if (S.anchor === null) S.anchor = S.cursor;
    selectRange(S.anchor, next);
  }
  S.cursor = next;
  if (S.items.length - S.cursor < 40) await loadMore();
  renderGrid();
}

async function switchQueue(name) {
  if (S.queues[name] === null || S.queues[name] === undefined) return;
  S.queue = name;
  params.set("queue", name);
  history.replaceState(null, "", `?${params}`);
  renderQueues();
  await loadQueue();
}

// -- keys ------------------------------------------------------------------------------------

async function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key;
  const help = $("help");
  if (!help.hidden) { if (key === "Escape" || key === "?") help.hidden = true; return; }
  if (key === "?") { help.hidden = false; return; }
  if (key === "[" || key === "]") {
    const names = Object.keys(S.queues).filter((n) => S.queues[n] !== null);
    const at = names.indexOf(S.queue);
    await switchQueue(names[(at + (key === "]" ? 1 : names.length - 1)) % names.length]);
    return;
  }
  if (key === "g") { S.cursor = Math.min(S.pos, Math.max(0, S.items.length - 1)); S.view = "grid"; render(); return; }
  if (key === "f" || (key === "Enter" && S.view === "grid")) { S.pos = S.cursor; S.view = "focus"; render(); return; }
  if (key === "z") { event.preventDefault(); await undo(); return; }
  const label = Object.prototype.hasOwnProperty.call(S.keys, key.toLowerCase()) ? S.keys[key.toLowerCase()] : undefined;
  if (S.view === "focus") await focusKey(event, key, label);
  else await gridKey(event, key, label);
}

async function toggleExplain() {
  const item = S.items[S.pos];
  if (!item) return;
  if (!S.explain) {
    // Ask first, so that "no model yet" is a message, not a broken image.
    const answer = await fetch(explained(item));
    if (!answer.ok) {
      const body = await answer.json().catch(() => ({}));
      toast(body.error || `explain failed (${answer.status})`, true);
      return;
    }
  }
  S.explain = !S.explain;
  toast(S.explain ? "Grad-CAM of the model's prediction (e: back to the picture)" : "picture");
  render();
}

async function focusKey(event, key, label) {
  if (key === "e") { await toggleExplain(); return; }
  if (key === "n") {
    if (await separate([S.pos])) render();
    return;
  }
  if (label !== undefined) {
    if (S.items[S.pos] && await decide([S.pos], label)) await advance();
  } else if (key === "s" || key === "ArrowRight" || key === " ") {
    event.preventDefault(); await advance();
  } else if (key === "ArrowLeft") {
    S.pos = Math.max(0, S.pos - 1); render();
  }
}

async function gridKey(event, key, label) {
  const cols = columns();
  const moves = {ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols};
  if (key in moves) { event.preventDefault(); await moveCursor(moves[key], event.shiftKey); return; }
  if (key === " ") { event.preventDefault(); toggle(S.cursor); renderGrid(); return; }
  if (key === "a") { S.items.forEach((_, i) => S.selected.add(i)); renderGrid(); return; }
  if (key === "Escape") { S.selected.clear(); S.anchor = null; renderGrid(); return; }
  if (key === "n") {
    const chosen = S.selected.size ? [...S.selected] : [S.cursor];
    if (await separate(chosen)) renderGrid();
    return;
  }
  if (label !== undefined) {
    const chosen = S.selected.size ? [...S.selected].sort((a, b) => a - b) : [S.cursor];
    if (await decide(chosen, label)) {
      S.selected.clear(); S.anchor = null;
      S.cursor = Math.min(S.items.length - 1, Math.max(...chosen) + 1);
      renderGrid();
    }
  }
}

// -- start -----------------------------------------------------------------------------------

document.addEventListener("keydown", (e) => { onKey(e).catch((err) => toast(err.message, true)); });
$("view-focus").onclick = () => { S.pos = S.cursor; S.view = "focus"; render(); };
$("view-grid").onclick = () => { S.cursor = S.pos; S.view = "grid"; render(); };
$("help-button").onclick = () => { $("help").hidden = false; };

(async () => {
  try {
    await loadState();
    await loadQueue();
    document.body.dataset.ready = "true";
  } catch (e) {
    toast(e.message, true);
  }
})();
