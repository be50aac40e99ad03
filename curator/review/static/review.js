// curator review: keyboard-first labeling. Plain JavaScript, no build step.
// Every decision goes to the server at once (POST /api/label) and the page moves on; the
// queues themselves are computed by the server (db/queues.py), never here.
//
// Keys and clicks are actions handled one at a time, in the order they came: twenty presses
// of a class key, however fast, are twenty decisions about twenty images, in order.
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
  classes: [], keys: {}, author: "", queues: {}, why: {}, model: null,
  queue: params.get("queue") || "new",
  items: [], next: 0, loading: false, reason: "",
  pos: 0,                    // focus view: the image shown
  member: -1,                // focus view: which of its group's copies is shown (-1: itself)
  view: params.get("view") === "grid" ? "grid" : "focus",
  cursor: 0, selected: new Set(), anchor: null,   // grid view
  undo: [],                  // stack of {events: [...], ids: [...]}
  explain: false,            // focus view: show the model's Grad-CAM instead of the picture
  // A queue of the moment instead of a named one: {title, url}, the m key's neighbours or
  // the / key's text search (one page, labeled like any other).
  special: null,
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
  if (!response.ok) {
    const error = new Error(data.error || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function toast(text, error = false) {
  const t = $("toast");
  t.textContent = text;
  t.className = "show" + (error ? " error" : "");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ""; }, error ? 4000 : 1400);
}

// -- actions, one at a time ------------------------------------------------------------------

const actions = [];
let acting = false;

function enqueue(action) {
  actions.push(action);
  if (!acting) drain();
}

async function drain() {
  acting = true;
  document.body.dataset.busy = "true";
  while (actions.length) {
    const action = actions.shift();
    try { await action(); } catch (e) { toast(e.message, true); }
  }
  acting = false;
  document.body.dataset.busy = "false";
}

// -- what an item shows ----------------------------------------------------------------------

const thumb = (item) => `/thumbs/${item.sha256}.jpg`;
const original = (item) => `/originals/${item.sha256}`;
// Grad-CAM of the model whose prediction is on screen, so the two never disagree.
const modelOf = (item) => (item.prediction ? item.prediction.model : (S.model && S.model.id));
const explained = (item) => {
  const model = modelOf(item);
  return `/api/explain/${item.id}.png` + (model ? `?model=${model}` : "");
};
const percent = (p) => `${Math.round(p * 1000) / 10} %`;

function shownImage(item) {
  // The picture in the focus view: the item, or the group member picked with c.
  if (S.member >= 0 && item.members && item.members[S.member]) return item.members[S.member];
  return item;
}

function suggestion(item) {
  const p = item.prediction;
  if (!p || !S.classes.includes(p.label)) return null;
  return p.label;
}

// -- loading ---------------------------------------------------------------------------------

async function loadState() {
  const state = await api("/api/state");
  Object.assign(S, {classes: state.classes, keys: state.keys, author: state.author,
                    queues: state.queues, why: state.why || {}, model: state.model});
  if (!params.get("queue")) S.queue = state.queue;
  $("who").textContent = `labeling as ${state.author}`;
  $("model").textContent = state.model ? `model ${state.model.id}` : "no model yet";
  $("model").title = state.model
    ? "the default model: the uncertain queue, the panel and Grad-CAM go by it unless a " +
      "queue ranks by another (the panel names it)"
    : "train one with curator train";
  renderQueues();
  renderLegend();
}

async function loadQueue() {
  S.items = []; S.next = 0; S.pos = 0; S.member = -1; S.cursor = 0; S.selected.clear();
  S.anchor = null; S.reason = "";
  await loadMore();
  render();
}

async function loadMore() {
  if (S.loading || S.next === null) return;
  S.loading = true;
  try {
    const page = S.special
      ? await api(S.special.url)
      : await api(`/api/queue/${encodeURIComponent(S.queue)}?limit=${PAGE}&after=${encodeURIComponent(S.next)}`);
    S.items.push(...page.items);
    S.next = page.next;
  } catch (e) {
    // A queue that cannot be had yet says why (no predictions, a model not scored yet).
    if (e.status === 409) S.reason = e.message; else toast(e.message, true);
    S.next = null;
  } finally {
    S.loading = false;
  }
}

async function refreshCounts() {
  try {
    const state = await api("/api/state");
    S.queues = state.queues; S.why = state.why || {};
    renderQueues();
  } catch (e) { /* counts are a nicety */ }
}

// -- deciding --------------------------------------------------------------------------------

async function decide(targets, label) {
  // targets: [{index, id}], id being the item's or, in the focus view, a member's.
  if (!targets.length) return false;
  const ids = targets.map((t) => t.id);
  const result = await api("/api/label", {ids, label});
  applyLabels(result.labels);
  S.undo.push({events: result.events, ids});
  const word = label === null ? "cleared" : label;
  toast(ids.length > 1 ? `${ids.length} images: ${word}` : word);
  refreshCounts();
  return true;
}

async function acceptSuggestions(indices) {
  // y: the model's suggestion for each chosen image, one request per class suggested.
  const byLabel = {};
  for (const i of indices) {
    const item = S.items[i];
    const label = item && suggestion(item);
    if (label) (byLabel[label] ||= []).push(item.id);
  }
  const labels = Object.keys(byLabel);
  if (!labels.length) { toast("no suggestion here: the model has not scored these", true); return false; }
  const events = [], ids = [];
  for (const label of labels) {
    const result = await api("/api/label", {ids: byLabel[label], label});
    applyLabels(result.labels);
    events.push(...result.events); ids.push(...byLabel[label]);
  }
  S.undo.push({events, ids});
  toast(ids.length > 1 ? `${ids.length} images: the model's suggestions` : `${labels[0]} (the model's)`);
  refreshCounts();
  return true;
}

async function undo() {
  const last = S.undo.pop();
  if (!last) { toast("nothing to undo"); return; }
  try {
    const result = await api("/api/undo", {events: last.events});
    applyLabels(result.labels);
    if (result.skipped.length) toast(`${result.skipped.length} changed since: left as they are`, true);
    else toast("undone");
    const first = S.items.findIndex((it) => last.ids.includes(it.id) ||
      (it.members || []).some((m) => last.ids.includes(m.id)));
    if (first >= 0) { S.pos = first; S.cursor = first; }
    render();
    refreshCounts();
  } catch (e) {
    S.undo.push(last);
    throw e;
  }
}

function armed(what) {
  // Splitting cannot be undone from this page: the key is pressed twice.
  const now = Date.now();
  if (armed.what !== what || now - armed.at > 2500) {
    armed.what = what; armed.at = now;
    return false;
  }
  armed.what = null;
  return true;
}

async function separate(indices) {
  if (!armed(`group:${indices}`)) {
    toast("press n again to split: these near copies are different pictures");
    return false;
  }
  const items = indices.map((i) => S.items[i]).filter((it) => it && it.duplicates.length);
  let count = 0;
  for (const item of items) {
    count += (await api("/api/separate", {id: item.id})).separated.length;
    item.duplicates = []; item.members = [];
  }
  toast(count ? `${count} images now stand alone` : "nothing to split here");
  refreshCounts();
  return true;
}

async function splitOff(item, member) {
  if (!armed(`member:${member.id}`)) {
    toast(`press n again: image ${member.id} is not a copy of the others`);
    return false;
  }
  await api("/api/split-off", {id: member.id});
  item.members = item.members.filter((m) => m.id !== member.id);
  item.duplicates = item.duplicates.filter((id) => id !== member.id);
  S.member = -1;
  toast(`image ${member.id} stands alone now; the rest stay together`);
  refreshCounts();
  return true;
}

function applyLabels(labels) {
  // labels: for each image the server touched, its group's label and its own.
  for (const item of S.items) {
    for (const m of [item, ...(item.members || [])]) {
      const now = labels[String(m.id)];
      if (!now) continue;
      Object.assign(item, {label: now.label, origin: now.origin, conflict: now.conflict});
      if (m !== item) { m.label = now.own; m.origin = now.own_origin; }
    }
  }
}

// -- rendering -------------------------------------------------------------------------------

function chip(el, item) {
  el.className = "chip";
  if (!item || !item.label) { el.textContent = "no label"; return; }
  el.textContent = `${item.label} · ${item.origin}`;
  if (item.origin === "human") el.classList.add("human");
  if (item.label === "reject") el.classList.add("reject");
  if (item.conflict) {
    el.classList.add("conflict");
    el.textContent += " · people disagree";
  }
}

function renderQueues() {
  const nav = $("queues");
  nav.replaceChildren();
  for (const [name, count] of Object.entries(S.queues)) {
    const b = document.createElement("button");
    b.textContent = count === null ? name : `${name} ${count}`;
    b.dataset.queue = name;
    b.disabled = count === null;
    b.title = count === null ? (S.why[name] || "not available yet") : "";
    b.setAttribute("aria-pressed", String(name === S.queue && !S.special));
    b.onclick = () => enqueue(() => switchQueue(name));
    nav.append(b);
  }
  if (S.special) {
    const b = document.createElement("button");
    b.id = "special";
    b.textContent = S.special.title;
    b.setAttribute("aria-pressed", "true");
    nav.append(b);
  }
}

function renderLegend() {
  const byLabel = {};
  for (const [key, label] of Object.entries(S.keys)) (byLabel[label] ||= []).push(key);
  const lines = Object.entries(byLabel).map(([label, keys]) =>
    `<li>${keys.map((k) => `<kbd>${escapeHtml(k)}</kbd>`).join(" ")} ${escapeHtml(label)}</li>`);
  lines.push("<li><kbd>y</kbd> the model's suggestion</li>",
             "<li><kbd>s</kbd> skip</li><li><kbd>z</kbd> undo</li>",
             "<li><kbd>←</kbd> <kbd>→</kbd> move</li>",
             "<li><kbd>c</kbd> next copy in the group</li>",
             "<li><kbd>n</kbd> <kbd>n</kbd> split the group (or the copy shown) off</li>",
             "<li><kbd>e</kbd> why the model decided (Grad-CAM)</li>",
             "<li><kbd>m</kbd> more like this · <kbd>/</kbd> search by words</li>",
             "<li><kbd>?</kbd> all keys</li>");
  $("legend").innerHTML = lines.join("");
  $("help-keys").innerHTML = `<ul>${lines.join("")}</ul>`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
                                                   '"': "&quot;", "'": "&#39;"}[c]));
}

function render() {
  $("focus").hidden = S.view !== "focus";
  $("grid").hidden = S.view !== "grid";
  $("view-focus").setAttribute("aria-pressed", String(S.view === "focus"));
  $("view-grid").setAttribute("aria-pressed", String(S.view === "grid"));
  if (S.view === "focus") renderFocus(); else renderGrid();
}

function emptyText() {
  if (S.reason) return S.reason;
  return "Nothing left in this queue.";
}

function predictionText(item) {
  const p = item.prediction;
  if (!p) return "";
  return `model ${p.model}: ${p.label} (${percent(p.confidence)})` +
    (p.in_sample ? " · trained on it" : "");
}

function renderFocus() {
  const item = S.items[S.pos];
  $("empty").hidden = Boolean(item);
  $("empty").textContent = emptyText();
  $("big").hidden = !item;
  document.body.dataset.imageId = item ? item.id : "";
  if (!item) {
    document.body.dataset.shownId = "";
    $("image-id").textContent = ""; chip($("current-label"), null);
    $("strip").replaceChildren(); $("group").replaceChildren(); $("prediction").textContent = "";
    return;
  }
  const shown = shownImage(item);
  document.body.dataset.shownId = shown.id;
  const explaining = S.explain && shown === item;
  $("big").src = explaining ? explained(item) : original(shown);
  $("big").alt = explaining ? `Grad-CAM of image ${item.id} by model ${modelOf(item)}` : `image ${shown.id}`;
  $("big").dataset.explain = String(explaining);
  $("image-id").textContent = `#${shown.id} · ${shown.width} × ${shown.height} · ${item.split} · ` +
    `${S.pos + 1} of ${S.items.length}${S.next === null ? "" : "+"}`;
  chip($("current-label"), item);
  $("prediction").textContent = predictionText(item);
  renderGroup(item);
  renderStrip();
  for (let i = 1; i <= 3; i++) {           // the next images are ready before they are needed
    const next = S.items[S.pos + i];
    if (next) new Image().src = original(next);
  }
}

function renderGroup(item) {
  // The group's members side by side, each with its own label: the one shown is outlined.
  const group = $("group");
  group.replaceChildren();
  const members = item.members || [];
  if (!members.length) return;
  const title = document.createElement("div");
  title.textContent = `${members.length} near cop${members.length > 1 ? "ies" : "y"}: ` +
    "labeled with it · c shows each · n n splits the one shown off";
  group.append(title);
  const row = document.createElement("div");
  row.className = "members";
  [item, ...members].forEach((m, i) => {
    const card = document.createElement("figure");
    card.className = "member" + (i - 1 === S.member ? " here" : "");
    card.dataset.memberId = m.id;
    const img = document.createElement("img");
    img.src = thumb(m); img.alt = `image ${m.id}`;
    const caption = document.createElement("figcaption");
    caption.textContent = `#${m.id} ${i ? "" : "(kept) "}` +
      (m.label ? `${m.label} · ${m.origin}` : "no label of its own");
    card.append(img, caption);
    card.onclick = () => enqueue(async () => { S.member = i - 1; render(); });
    row.append(card);
  });
  group.append(row);
}

function renderStrip() {
  const strip = $("strip");
  strip.replaceChildren();
  for (let i = Math.max(0, S.pos - 5); i < Math.min(S.items.length, S.pos + 14); i++) {
    const img = document.createElement("img");
    img.src = thumb(S.items[i]);
    img.alt = "";
    img.className = (i === S.pos ? "here " : "") + (S.items[i].origin === "human" ? "labeled" : "");
    img.onclick = () => enqueue(async () => { S.pos = i; S.member = -1; render(); });
    strip.append(img);
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
    if (item.prediction) {
      const guess = document.createElement("span");
      guess.className = "guess";
      guess.textContent = `${item.prediction.label} ${percent(item.prediction.confidence)}`;
      guess.title = `model ${item.prediction.model}'s prediction (y accepts it)`;
      tile.append(guess);
    }
    if (item.duplicates.length) {
      const dups = document.createElement("span");
      dups.className = "dups";
      dups.textContent = `+${item.duplicates.length}`;
      dups.title = "near copies in this group, labeled with it";
      tile.append(dups);
    }
    tile.onclick = (event) => {
      const mods = {shiftKey: event.shiftKey, ctrlKey: event.ctrlKey || event.metaKey};
      enqueue(async () => clickTile(i, mods));
    };
    tile.ondblclick = () => enqueue(async () => { S.pos = i; S.member = -1; S.view = "focus"; render(); });
    tiles.append(tile);
  });
  const n = S.selected.size;
  $("grid-status").textContent = S.items.length === 0 ? emptyText() : n
    ? `${n} selected: a class key labels them all, y takes the model's suggestions · Esc clears`
    : `${S.items.length} images${S.next === null ? "" : " (more below)"} · space selects · ` +
      "a class key labels the image under the cursor";
  const current = tiles.children[S.cursor];
  if (current) current.scrollIntoView({block: "nearest"});
}

function clickTile(i, mods) {
  if (mods.shiftKey && S.anchor !== null) selectRange(S.anchor, i);
  else if (mods.ctrlKey) toggle(i);
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
  S.member = -1;
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
  S.special = null;
  // A cluster is looked at whole: the grid shows it, a class key labels it.
  if (name === "clusters") S.view = "grid";
  params.set("queue", name);
  history.replaceState(null, "", `?${params}`);
  renderQueues();
  await loadQueue();
}

// -- keys ------------------------------------------------------------------------------------

const SCROLLING = new Set([" ", "ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight", "z", "Tab"]);

async function onKey(event) {
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
  if (key === "f" || (key === "Enter" && S.view === "grid")) { S.pos = S.cursor; S.member = -1; S.view = "focus"; render(); return; }
  if (key === "z") { await undo(); return; }
  if (key === "m") { await moreLike(); return; }
  if (key === "/") { openSearch(); return; }
  const label = Object.prototype.hasOwnProperty.call(S.keys, key.toLowerCase()) ? S.keys[key.toLowerCase()] : undefined;
  if (S.view === "focus") await focusKey(event, key, label);
  else await gridKey(event, key, label);
}

// -- vectors: more like this, text search, clusters -------------------------------------------

async function showSpecial(title, url) {
  S.special = {title, url};
  renderQueues();
  await loadQueue();
  if (S.reason) toast(S.reason, true);
}

async function moreLike() {
  const item = S.items[S.view === "grid" ? S.cursor : S.pos];
  if (!item) return;
  S.view = "grid";
  await showSpecial(`like #${item.id}`, `/api/similar/${item.id}?limit=${PAGE}`);
}

function openSearch() {
  const form = $("search");
  form.hidden = false;
  $("search-text").value = "";
  $("search-text").focus();
}

$("search").onsubmit = (e) => {
  e.preventDefault();
  const text = $("search-text").value.trim();
  $("search").hidden = true;
  $("search-text").blur();
  if (!text) return;
  S.view = "grid";
  enqueue(() => showSpecial(`“${text}”`, `/api/search?text=${encodeURIComponent(text)}&limit=${PAGE}`));
};

// In the clusters queue a class key with nothing selected labels the whole cluster (what is
// not decided on this page yet), and the next cluster comes.
function wholeCluster() {
  if (S.queue !== "clusters" || S.special || S.selected.size) return null;
  return S.items.map((it, i) => ({it, i})).filter(({it}) => it.origin !== "human").map(({i}) => i);
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
  S.member = -1;
  toast(S.explain ? `Grad-CAM of model ${modelOf(item)}'s prediction (e: back to the picture)` : "picture");
  render();
}

async function focusKey(event, key, label) {
  const item = S.items[S.pos];
  if (key === "e") { await toggleExplain(); return; }
  if (key === "c") {
    if (item && item.members && item.members.length) {
      S.member = S.member + 1 < item.members.length ? S.member + 1 : -1;
      S.explain = false;
      render();
    }
    return;
  }
  if (key === "n") {
    if (!item) return;
    const member = S.member >= 0 ? item.members[S.member] : null;
    if (member ? await splitOff(item, member) : await separate([S.pos])) render();
    return;
  }
  if (label !== undefined || key === "y") {
    if (!item) return;
    const shown = shownImage(item);
    let done;
    if (key === "y") done = await acceptSuggestions([S.pos]);
    else done = await decide([{index: S.pos, id: shown.id}], label);
    // A copy decided alone stays on screen (its group may need more); the group moves on.
    if (done && shown === item) await advance(); else if (done) render();
  } else if (key === "s" || key === "ArrowRight" || key === " ") {
    await advance();
  } else if (key === "ArrowLeft") {
    S.pos = Math.max(0, S.pos - 1); S.member = -1; render();
  }
}

async function gridKey(event, key, label) {
  const cols = columns();
  const moves = {ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols};
  if (key in moves) { await moveCursor(moves[key], event.shiftKey); return; }
  if (key === " ") { toggle(S.cursor); renderGrid(); return; }
  if (key === "a") { S.items.forEach((_, i) => S.selected.add(i)); renderGrid(); return; }
  if (key === "Escape") { S.selected.clear(); S.anchor = null; renderGrid(); return; }
  if (key === "n") {
    const chosen = S.selected.size ? [...S.selected] : [S.cursor];
    if (await separate(chosen)) renderGrid();
    return;
  }
  const cluster = label !== undefined ? wholeCluster() : null;
  if (cluster && cluster.length) {
    const done = await decide(cluster.map((i) => ({index: i, id: S.items[i].id})), label);
    if (done) { await loadQueue(); refreshCounts(); }
    return;
  }
  if (label !== undefined || key === "y") {
    const chosen = S.selected.size ? [...S.selected].sort((a, b) => a - b) : [S.cursor];
    const done = key === "y"
      ? await acceptSuggestions(chosen)
      : await decide(chosen.filter((i) => S.items[i]).map((i) => ({index: i, id: S.items[i].id})), label);
    if (done) {
      S.selected.clear(); S.anchor = null;
      S.cursor = Math.min(S.items.length - 1, Math.max(...chosen) + 1);
      renderGrid();
    }
  }
}

// -- start -----------------------------------------------------------------------------------

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.target === $("search-text")) {  // typing words, not keys of the page
    if (e.key === "Escape") { $("search").hidden = true; $("search-text").blur(); }
    return;
  }
  if (e.key === "/") e.preventDefault();  // the slash is not typed into the box it opens
  if (SCROLLING.has(e.key)) e.preventDefault();
  // What the handler needs of the event, taken now: it runs after the actions before it.
  const event = {key: e.key, shiftKey: e.shiftKey};
  enqueue(() => onKey(event));
});
$("view-focus").onclick = () => enqueue(async () => { S.pos = S.cursor; S.member = -1; S.view = "focus"; render(); });
$("view-grid").onclick = () => enqueue(async () => { S.cursor = S.pos; S.view = "grid"; render(); });
$("help-button").onclick = () => { $("help").hidden = false; };

enqueue(async () => {
  await loadState();
  if (S.queue === "clusters") S.view = "grid";
  await loadQueue();
  document.body.dataset.ready = "true";
});
