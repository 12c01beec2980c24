// StyleMapGAN web editor: plain JavaScript over the JSON/PNG API of `stylemapgan serve`.
//
// Masks are painted on an offscreen canvas per reference (a few times the model's resolution, for smooth
// strokes) and sent at model size as PNG (alpha = weight). Requests of one kind are "latest wins": at most
// one in flight, newer state waits and is sent as soon as it returns (or at once, aborting the old one, when
// the images change); every request carries a sequence number, stale answers are dropped, and the server
// refuses (409) requests that were overtaken. A busy server (503) or a lost connection is retried with
// backoff, always with the newest state, so the last change's result arrives once the load falls.
// Messages are a toast fixed to the viewport: they never move the canvases.
//
// The page offers what the model can do, as /api/info says (`capabilities`, `features`), never by its family's
// name: painted masks pasted with shifts and w / w+ blends (masks), or a part list with shape / texture toggles
// per reference, removal, a segmentation overlay and per-part sliders (parts); a mask painted on a reference of a
// model with parts selects the parts it covers (/api/parts/under-mask).
"use strict";

const COLORS = ["#e6194b", "#2ca02c", "#3558d6", "#f58231"];
const MAX_REFS = 4;
const CLIENT_ID = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)).replace(/[^A-Za-z0-9_-]/g, "");
const UNDO_LIMIT = 40;
const RETRY_FIRST_MS = 250; // first wait after a 503 / a lost connection; doubled each time, up to RETRY_MAX_MS
const RETRY_MAX_MS = 4000;
const UPLOAD_ATTEMPTS = 6;
const MASK_FILL_ALPHA = 0.3; // the painted region, see-through: the image under it stays visible
const RECONSTRUCTION_LABEL = "Reconstruction (no edit yet)";

const $ = (id) => document.getElementById(id);

const state = {
  info: null,
  size: 64,
  scale: 4, // mask canvas pixels per model pixel
  target: "source", // "source" or a reference index
  source: null, // {id, name, parts, bitmap}
  refs: new Array(MAX_REFS).fill(null), // {id, name, parts, bitmap, mask, undo, redo, shift}
  active: 0,
  tool: "brush",
  brush: 6,
  mode: "w",
  alpha: 1,
  feather: 0,
  resultId: null,
  interp: null, // {bitmap, frames}
  caps: null, // the model's capabilities (/api/info)
  features: null, // what the server offers beyond them (refine, clusters, part sliders)
  remove: new Set(), // models with parts: parts taken away from the source
  segOn: false, // the segmentation overlays are shown
  attrValues: {}, // slider name -> strength (whole-code sliders and every part's)
};

// a model with parts swaps them (the part list); a model with masks pastes painted regions
const partMode = () => Boolean(state.caps && state.caps.parts.length);
const paintMode = () => Boolean(state.caps && state.caps.masks);

// ---- messages and small helpers -------------------------------------------------------------------------

let messageTimer = null;
// kind: "error" (red, 12 s), "info" (4 s) or "busy" (the server is busy and a retry is due; until it passes)
function showMessage(text, kind = "error") {
  const box = $("message");
  $("message-text").textContent = text;
  box.className = kind === "error" ? "" : "info";
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 12000 : kind === "busy" ? 15000 : 4000);
}

function hideMessage(kind) {
  const box = $("message");
  if (!box.hidden && box.dataset.kind === kind) box.hidden = true;
}

function backoffDelay(failures) {
  const base = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.max(0, failures - 1));
  return base * (0.75 + 0.5 * Math.random()); // jitter: pages turned away together do not come back together
}

function retryNotice(reason, delay) {
  showMessage(`${reason}; retrying your latest change in ${(delay / 1000).toFixed(1)} s…`, "busy");
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    if (body && body.error) return body.error;
  } catch (_) { /* not JSON */ }
  return `${resp.status} ${resp.statusText}`;
}

async function fetchBitmap(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(await errorText(resp));
  return createImageBitmap(await resp.blob());
}

function makeCanvas(w, h) {
  const c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  return c;
}

function drawBitmap(canvas, bitmap) {
  const ctx = canvas.getContext("2d");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  ctx.drawImage(bitmap, 0, 0);
}

let busyCount = 0;
function busy(delta) {
  busyCount = Math.max(0, busyCount + delta);
  $("busy").hidden = busyCount === 0;
}

// ---- latest-wins requests -----------------------------------------------------------------------------------

class LatestRequest {
  // build() returns {url, body, ...} (or null: nothing to send); onResult(resp, rttMs, seq, req) shows the answer.
  // `name` keeps each kind's sequence apart on the server (two of them may use the same route).
  constructor(name, onResult, minGapMs = 30) {
    this.client = `${CLIENT_ID}-${name}`;
    this.onResult = onResult;
    this.minGap = minGapMs;
    this.seq = 0;
    this.shown = 0;
    this.inflight = null;
    this.dirty = false;
    this.timer = null;
    this.lastStart = 0;
    this.build = null;
    this.failures = 0; // busy answers (503) or lost connections in a row
    this.retryAt = 0; // nothing is sent before this (performance.now() ms)
    this.waiting = false; // a retry is due: counted as work in progress (the busy marker stays on)
  }

  trigger(build, urgent = false) {
    this.build = build;
    if (this.inflight) {
      if (!urgent) { this.dirty = true; return; }
      this.inflight.ctrl.abort(); // obsolete: the server skips it too if it has not started
      this.inflight = null;
    }
    this.schedule(urgent ? 0 : null);
  }

  schedule(delay = null) {
    if (this.timer) return;
    const now = performance.now();
    const wait = Math.max(delay ?? this.lastStart + this.minGap - now, this.retryAt - now, 0);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.waiting) { this.waiting = false; busy(-1); }
      this.send();
    }, wait);
  }

  retryLater(mine, reason) {
    if (this.inflight !== mine) return; // a newer request already carries newer state
    this.failures += 1;
    const delay = backoffDelay(this.failures);
    this.retryAt = performance.now() + delay;
    this.dirty = true; // what it carried is still to be shown: send the newest state again
    if (!this.waiting) { this.waiting = true; busy(+1); }
    retryNotice(reason, delay);
  }

  async send() {
    this.dirty = false;
    const req = this.build ? this.build() : null;
    if (!req) return;
    const seq = ++this.seq;
    const ctrl = new AbortController();
    const mine = { seq, ctrl, timedOut: false };
    this.inflight = mine;
    this.lastStart = performance.now();
    const started = this.lastStart;
    const timeout = setTimeout(() => { mine.timedOut = true; ctrl.abort(); }, 60000);
    busy(+1);
    try {
      const resp = await fetch(req.url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ...req.body, seq, client: this.client }),
        signal: ctrl.signal,
      });
      if (resp.status === 503) { this.retryLater(mine, `the server is busy (${await errorText(resp)})`); return; }
      if (this.failures) { this.failures = 0; this.retryAt = 0; hideMessage("busy"); }
      if (resp.status === 409) return; // overtaken by a newer request: nothing to show
      if (!resp.ok) { showMessage(await errorText(resp)); return; }
      if (seq <= this.shown) return; // an older answer arriving late
      this.shown = seq;
      await this.onResult(resp, performance.now() - started, seq, req);
    } catch (err) {
      if (err.name !== "AbortError" || mine.timedOut) this.retryLater(mine, `no answer (${err.message || err})`);
    } finally {
      busy(-1);
      clearTimeout(timeout);
      if (this.inflight === mine) this.inflight = null;
      if (this.dirty && !this.inflight) this.schedule();
    }
  }
}

// fetch, retried with backoff while the server answers 503 (busy) or cannot be reached
async function fetchRetrying(url, init, attempts = UPLOAD_ATTEMPTS) {
  for (let attempt = 1; ; attempt++) {
    let resp = null;
    let reason;
    try {
      resp = await fetch(url, init);
      if (resp.status !== 503) { if (attempt > 1) hideMessage("busy"); return resp; }
      reason = `the server is busy (${await errorText(resp)})`;
    } catch (err) {
      if (attempt >= attempts) throw err;
      reason = `no answer (${err.message || err})`;
    }
    if (attempt >= attempts) return resp;
    const delay = backoffDelay(attempt);
    retryNotice(reason, delay);
    await sleep(delay);
  }
}

function timingText(resp, rtt) {
  const h = (name) => resp.headers.get(name);
  return `server ${h("X-Server-Ms")} ms (model ${h("X-Infer-Ms")}, queue ${h("X-Queue-Ms")}) · round trip ${rtt.toFixed(0)} ms`;
}

// ---- images: slots, gallery, uploads ----------------------------------------------------------------------

function newMask() {
  const n = state.size * state.scale;
  return makeCanvas(n, n);
}

function renderSlots() {
  const box = $("slots");
  box.replaceChildren();
  const entries = [["source", "Source", state.source, "#555"]];
  for (let i = 0; i < MAX_REFS; i++) entries.push([i, `Ref ${i + 1}`, state.refs[i], COLORS[i]]);
  for (const [key, label, item, color] of entries) {
    const el = document.createElement("div");
    el.className = "slot" + (state.target === key ? " target" : "");
    el.id = key === "source" ? "slot-source" : `slot-ref-${key}`;
    el.style.setProperty("--slot-color", color);
    el.tabIndex = 0;
    el.setAttribute("role", "button");
    el.title = key === "source" ? "pick the source" : `pick reference ${key + 1} (and paint its mask)`;
    if (key !== "source") {
      const sw = document.createElement("span");
      sw.className = "swatch";
      el.append(sw);
    }
    const thumb = document.createElement(item ? "img" : "span");
    if (item) { thumb.src = `/api/images/${item.id}`; thumb.alt = item.name; } else thumb.className = "placeholder";
    el.append(thumb, document.createTextNode(label));
    if (key !== "source" && item) {
      const rm = document.createElement("button");
      rm.className = "remove";
      rm.textContent = "×";
      rm.title = "remove this reference";
      rm.addEventListener("click", (ev) => { ev.stopPropagation(); removeRef(key); });
      el.append(rm);
    }
    const choose = () => {
      state.target = key;
      if (key !== "source") { state.active = key; drawReference(); renderParts(); renderPartList(); drawSegmentations(); }
      renderSlots();
    };
    el.addEventListener("click", choose);
    el.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); choose(); } });
    box.append(el);
  }
  $("active-ref-label").textContent = `${state.active + 1}`;
  $("active-ref-label").style.color = COLORS[state.active];
}

function thumbButton(desc) {
  const b = document.createElement("button");
  b.className = "thumb";
  b.dataset.id = desc.id;
  b.title = desc.name;
  const img = document.createElement("img");
  img.src = `/api/images/${desc.id}`;
  img.alt = desc.name;
  img.loading = "lazy";
  b.append(img);
  b.addEventListener("click", () => pick(desc));
  return b;
}

function addUploadThumb(desc) {
  const box = $("uploads");
  box.querySelector(".empty")?.remove();
  box.prepend(thumbButton(desc));
}

async function keepResult(desc) {
  const resp = await fetch(`/api/images/${desc.id}/keep`, { method: "POST" });
  if (!resp.ok) throw new Error(await errorText(resp));
  const kept = await resp.json();
  addUploadThumb(kept);
  return kept;
}

async function pick(desc, target = state.target) {
  try {
    if (desc.id.startsWith("r_")) desc = await keepResult(desc); // results expire; uploads last longer
    const bitmap = await fetchBitmap(`/api/images/${desc.id}`);
    if (target === "source") {
      state.source = { ...desc, bitmap };
      showDomainWarning(desc.domain_warning);
      drawSource();
      requestReconstruction();
      requestAttributes(true);
      // first source: go on to picking reference 1; later: stay with the reference being painted
      if (state.refs.every((r) => r === null)) state.active = 0;
      state.target = state.active;
    } else {
      const old = state.refs[target];
      state.refs[target] = {
        ...desc, bitmap,
        mask: old ? old.mask : newMask(),
        undo: old ? old.undo : [], redo: old ? old.redo : [],
        shift: old ? old.shift : [0, 0],
        swaps: old ? old.swaps : {}, // models with parts: part -> {shape, texture} ticked by the user
        maskParts: [], // the parts the painted mask covers on this image (asked again below)
      };
      state.active = target;
      if (partMode()) requestUnderMask();
    }
    renderSlots();
    drawReference();
    renderParts();
    renderPartList();
    drawOverlay();
    drawSegmentations();
    requestEdit(true);
  } catch (err) {
    showMessage(`cannot use ${desc.name}: ${err.message || err}`);
  }
}

function removeRef(i) {
  state.refs[i] = null;
  if (state.active === i) {
    const other = state.refs.findIndex((r) => r !== null);
    state.active = other === -1 ? 0 : other;
  }
  renderSlots();
  drawReference();
  renderParts();
  renderPartList();
  drawOverlay();
  drawSegmentations();
  requestEdit(true);
}

async function uploadFile(file) {
  const limits = state.info.limits;
  if (file.size > limits.max_upload_bytes) {
    showMessage(`${file.name}: ${(file.size / 1e6).toFixed(1)} MB is over the ${(limits.max_upload_bytes / 1e6).toFixed(1)} MB limit`);
    return;
  }
  const fit = $("upload-fit").value;
  const align = $("upload-align").checked ? "&align=1" : "";  // the largest face, aligned; the photo kept
  busy(+1);
  try {
    const resp = await fetchRetrying(`/api/upload?fit=${fit}${align}&name=${encodeURIComponent(file.name)}`, {
      method: "POST",
      headers: { "Content-Type": file.type || "application/octet-stream" },
      body: file,
    });
    if (!resp.ok) { showMessage(`${file.name}: ${await errorText(resp)}`); return; }
    const desc = await resp.json();
    addUploadThumb(desc);
    await pick(desc);
  } catch (err) {
    showMessage(`${file.name}: upload failed (${err.message || err})`);
  } finally {
    busy(-1);
  }
}

// an upload the model reconstructs far worse than its own test images: say so, next to the canvases
function showDomainWarning(text) {
  const box = $("domain-warning");
  box.textContent = text || "";
  box.hidden = !text;
}

// ---- drawing ------------------------------------------------------------------------------------------------

// A painted mask as shown over an image: a see-through fill and an opaque outline around it, so the image
// stays visible under the region (and a painted region does not look like an edit of the reference).
let edgeCanvas = null;
function drawMaskStyled(ctx, mask, x, y, fillAlpha) {
  const n = mask.width;
  if (!edgeCanvas || edgeCanvas.width !== n) edgeCanvas = makeCanvas(n, n);
  const e = edgeCanvas.getContext("2d");
  const w = Math.max(1, Math.round(n / 128)); // outline width: ~2 css px on the 256 px view
  e.clearRect(0, 0, n, n);
  for (const [dx, dy] of [[-w, 0], [w, 0], [0, -w], [0, w], [-w, -w], [w, w], [-w, w], [w, -w]]) e.drawImage(mask, dx, dy);
  e.globalCompositeOperation = "destination-out"; // keep only the ring just outside the region
  e.drawImage(mask, 0, 0);
  e.globalCompositeOperation = "source-over";
  ctx.save();
  ctx.globalAlpha = fillAlpha;
  ctx.drawImage(mask, x, y);
  ctx.globalAlpha = 1;
  ctx.drawImage(edgeCanvas, x, y);
  ctx.restore();
}

function drawSource() {
  const c = $("source-canvas");
  if (state.source) drawBitmap(c, state.source.bitmap);
}

function drawReference() {
  const ref = state.refs[state.active];
  const img = $("ref-canvas");
  const mask = $("mask-canvas");
  const n = state.size * state.scale;
  mask.width = n;
  mask.height = n;
  const ctx = mask.getContext("2d");
  ctx.clearRect(0, 0, n, n);
  if (!ref) {
    img.getContext("2d").clearRect(0, 0, img.width, img.height);
    return;
  }
  drawBitmap(img, ref.bitmap);
  drawMaskStyled(ctx, ref.mask, 0, 0, MASK_FILL_ALPHA);
}

function drawOverlay() {
  const c = $("source-overlay");
  const n = state.size * state.scale;
  c.width = n;
  c.height = n;
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, n, n);
  if (!paintMode()) return; // a painted mask selects parts of its reference: nothing is pasted into the source
  state.refs.forEach((ref, i) => {
    if (!ref) return;
    drawMaskStyled(ctx, ref.mask, ref.shift[0] * state.scale, ref.shift[1] * state.scale,
      i === state.active ? MASK_FILL_ALPHA : MASK_FILL_ALPHA / 2);
  });
}

function canvasPoint(canvas, ev) {
  const rect = canvas.getBoundingClientRect();
  return [(ev.clientX - rect.left) / rect.width, (ev.clientY - rect.top) / rect.height];
}

function snapshot(ref) {
  ref.undo.push(ref.mask.getContext("2d").getImageData(0, 0, ref.mask.width, ref.mask.height));
  if (ref.undo.length > UNDO_LIMIT) ref.undo.shift();
  ref.redo.length = 0;
}

function maskChanged() {
  drawReference();
  drawOverlay();
  if (paintMode()) requestEdit();
  if (partMode()) requestUnderMask(); // the edit follows once the covered parts are known
}

function setupPainting() {
  const canvas = $("mask-canvas");
  let last = null;
  const stroke = (from, to) => {
    const ref = state.refs[state.active];
    const ctx = ref.mask.getContext("2d");
    const n = ref.mask.width;
    ctx.save();
    ctx.globalCompositeOperation = state.tool === "eraser" ? "destination-out" : "source-over";
    ctx.strokeStyle = COLORS[state.active];
    ctx.fillStyle = COLORS[state.active];
    ctx.lineWidth = state.brush * state.scale;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from[0] * n, from[1] * n);
    ctx.lineTo(to[0] * n, to[1] * n);
    ctx.stroke();
    ctx.restore();
  };
  canvas.addEventListener("pointerdown", (ev) => {
    const ref = state.refs[state.active];
    if (!ref) { showMessage("pick a reference image first (click a Ref slot, then an image)", "info"); return; }
    canvas.setPointerCapture(ev.pointerId);
    snapshot(ref);
    last = canvasPoint(canvas, ev);
    stroke(last, last);
    maskChanged();
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (!last || !state.refs[state.active]) return;
    const p = canvasPoint(canvas, ev);
    stroke(last, p);
    last = p;
    maskChanged();
  });
  const end = () => { last = null; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
}

function setupDragging() {
  const canvas = $("source-overlay");
  let start = null;
  canvas.addEventListener("pointerdown", (ev) => {
    const ref = state.refs[state.active];
    if (!ref || !state.caps || !state.caps.shifts) return;
    canvas.setPointerCapture(ev.pointerId);
    canvas.classList.add("dragging");
    start = { point: canvasPoint(canvas, ev), shift: [...ref.shift] };
  });
  canvas.addEventListener("pointermove", (ev) => {
    const ref = state.refs[state.active];
    if (!start || !ref) return;
    const p = canvasPoint(canvas, ev);
    const limit = state.size;
    const dx = Math.round((p[0] - start.point[0]) * state.size);
    const dy = Math.round((p[1] - start.point[1]) * state.size);
    const shift = [Math.max(-limit, Math.min(limit, start.shift[0] + dx)), Math.max(-limit, Math.min(limit, start.shift[1] + dy))];
    if (shift[0] === ref.shift[0] && shift[1] === ref.shift[1]) return;
    ref.shift = shift;
    drawOverlay();
    requestEdit();
  });
  const end = () => { start = null; canvas.classList.remove("dragging"); };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
}

function undo() {
  const ref = state.refs[state.active];
  if (!ref || !ref.undo.length) return;
  const ctx = ref.mask.getContext("2d");
  ref.redo.push(ctx.getImageData(0, 0, ref.mask.width, ref.mask.height));
  ctx.putImageData(ref.undo.pop(), 0, 0);
  maskChanged();
}

function redo() {
  const ref = state.refs[state.active];
  if (!ref || !ref.redo.length) return;
  const ctx = ref.mask.getContext("2d");
  ref.undo.push(ctx.getImageData(0, 0, ref.mask.width, ref.mask.height));
  ctx.putImageData(ref.redo.pop(), 0, 0);
  maskChanged();
}

function clearMask() {
  const ref = state.refs[state.active];
  if (!ref) return;
  snapshot(ref);
  ref.mask.getContext("2d").clearRect(0, 0, ref.mask.width, ref.mask.height);
  maskChanged();
}

// ---- part masks ---------------------------------------------------------------------------------------------

function renderParts() {
  const parts = state.info ? state.info.parts : [];
  const clusters = state.info ? state.info.clusters || [] : [];
  $("parts-box").hidden = !paintMode() || (parts.length === 0 && clusters.length === 0);
  const ref = state.refs[state.active];
  for (const b of $("parts").querySelectorAll("button")) b.disabled = !(ref && ref.parts);
  // the model's part clusters come from any image's own features: every reference has them
  for (const b of $("clusters").querySelectorAll("button")) b.disabled = !ref;
}

function applyPart(name) {
  const ref = state.refs[state.active];
  if (!ref || !ref.parts) return;
  applyMaskFrom(`/api/images/${ref.id}/parts?names=${encodeURIComponent(name)}`, `part ${name}`);
}

function applyCluster(cluster) {
  const ref = state.refs[state.active];
  if (!ref) return;
  applyMaskFrom(`/api/images/${ref.id}/clusters?ids=${cluster.id}`, cluster.label);
}

async function applyMaskFrom(url, what) {
  const ref = state.refs[state.active];
  try {
    const bitmap = await fetchBitmap(url);
    const n = state.size;
    const tmp = makeCanvas(n, n);
    const tctx = tmp.getContext("2d");
    tctx.drawImage(bitmap, 0, 0);
    const data = tctx.getImageData(0, 0, n, n);
    const [r, g, b] = hexToRgb(COLORS[state.active]);
    for (let i = 0; i < data.data.length; i += 4) {
      const on = data.data[i] > 127;
      data.data[i] = r; data.data[i + 1] = g; data.data[i + 2] = b; data.data[i + 3] = on ? 255 : 0;
    }
    tctx.putImageData(data, 0, 0);
    snapshot(ref);
    const ctx = ref.mask.getContext("2d");
    ctx.save();
    ctx.imageSmoothingEnabled = false;
    ctx.globalCompositeOperation = state.tool === "eraser" ? "destination-out" : "source-over";
    ctx.drawImage(tmp, 0, 0, ref.mask.width, ref.mask.height);
    ctx.restore();
    maskChanged();
  } catch (err) {
    showMessage(`${what}: ${err.message || err}`);
  }
}

function hexToRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

// ---- parts (models with parts) ------------------------------------------------------------------------------

// what the user chose for one part of a reference: their ticks, else on when the painted mask covers the part
function selection(ref, part) {
  if (ref.swaps[part]) return ref.swaps[part];
  const painted = ref.maskParts.includes(part);
  return { shape: painted, texture: painted };
}

// what a reference gives the source: part -> "shape" | "texture" | "both" (removed parts give nothing)
function effectiveSwaps(ref) {
  const out = {};
  if (!ref || !partMode()) return out;
  for (const part of state.caps.parts) {
    const sel = selection(ref, part);
    const what = sel.shape && sel.texture ? "both" : sel.shape ? "shape" : sel.texture ? "texture" : null;
    if (what && !state.remove.has(part)) out[part] = what;
  }
  return out;
}

function buildPartList() {
  const caps = state.caps;
  const rows = caps.parts.map((part, k) => {
    const row = document.createElement("tr");
    row.dataset.part = part;
    const th = document.createElement("th");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = state.info.part_colors[k] || "transparent";
    swatch.title = `${part}'s colour in the segmentation`;
    const name = document.createElement("button");
    name.className = "part-name";
    name.dataset.part = part;
    name.textContent = part.replace("_", " ");
    name.title = `take all of ${part} from the active reference (again: take none)`;
    name.addEventListener("click", () => togglePart(part));
    th.append(swatch, name);
    row.append(th);
    const whats = caps.shape_texture ? ["shape", "texture"] : ["both"];
    if (caps.composition) whats.push("remove");
    for (const what of whats) {
      const td = document.createElement("td");
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.dataset.part = part;
      input.dataset.what = what;
      input.addEventListener("change", () => setPart(part, what, input.checked));
      label.append(input, ` ${what === "both" ? "swap" : what}`);
      label.title = what === "remove" ? `take ${part} away from the source (what is behind it shows)`
        : `take ${part}'s ${what === "both" ? "shape and texture" : what} from the active reference`;
      td.append(label);
      row.append(td);
    }
    return row;
  });
  $("part-list").replaceChildren(...rows);
  renderPartList();
}

function renderPartList() {
  if (!partMode()) return;
  const ref = state.refs[state.active];
  $("part-ref-label").textContent = String(state.active + 1);
  $("part-ref-label").style.color = COLORS[state.active];
  for (const row of $("part-list").querySelectorAll("tr[data-part]")) {
    const part = row.dataset.part;
    const sel = ref ? selection(ref, part) : { shape: false, texture: false };
    const removed = state.remove.has(part);
    for (const input of row.querySelectorAll("input")) {
      const what = input.dataset.what;
      if (what === "remove") { input.checked = removed; input.disabled = !state.source; continue; }
      input.disabled = !ref || removed;
      input.checked = !removed && (what === "both" ? sel.shape && sel.texture : sel[what]);
    }
    row.classList.toggle("selected", !removed && Boolean(sel.shape || sel.texture));
    row.querySelector(".part-name").disabled = !ref;
  }
  const chosen = Object.keys(effectiveSwaps(ref));
  const hint = $("interp-parts");
  hint.hidden = false;
  hint.textContent = chosen.length
    ? `only ${chosen.join(", ")} move (the active reference's chosen parts)`
    : "every part moves (choose parts of the active reference to move only those)";
}

function setPart(part, what, on) {
  if (what === "remove") {
    if (on) state.remove.add(part);
    else state.remove.delete(part);
  } else {
    const ref = state.refs[state.active];
    if (!ref) return;
    const sel = { ...selection(ref, part) };
    if (what === "both") { sel.shape = on; sel.texture = on; } else sel[what] = on;
    ref.swaps[part] = sel; // the user's choice from now on, whatever the mask covers
  }
  renderPartList();
  requestEdit();
}

function togglePart(part) {
  const ref = state.refs[state.active];
  if (!ref) return;
  const sel = selection(ref, part);
  state.remove.delete(part);
  setPart(part, "both", !(sel.shape && sel.texture));
}

// a painted mask -> the parts it covers on its reference (by the model's segmentation): those are chosen
let maskGeneration = 0; // bumped by every new mask state: an answer for an older one is dropped
const underMaskRequest = new LatestRequest("under-mask", async (resp, rtt, seq, req) => {
  const body = await resp.json();
  const ref = state.refs[req.index];
  if (req.generation !== maskGeneration || !ref || ref.id !== body.id) return;
  ref.maskParts = body.parts;
  renderPartList();
  requestEdit();
});

function requestUnderMask() {
  const index = state.active;
  underMaskRequest.trigger(() => {
    const ref = state.refs[index];
    if (!ref) return null;
    const generation = ++maskGeneration;
    const small = smallMask(ref);
    if (maskIsEmpty(small)) { // nothing painted: nothing chosen by the mask, no need to ask
      if (ref.maskParts.length) { ref.maskParts = []; renderPartList(); requestEdit(); }
      return null;
    }
    return { index, generation, url: "/api/parts/under-mask", body: { id: ref.id, mask: small.toDataURL("image/png") } };
  });
}

// the model's part per pixel over the source, the active reference and the result (a toggle)
const segCache = new Map(); // image id -> bitmap, the few most recent
async function segmentationOf(id) {
  if (segCache.has(id)) return segCache.get(id);
  const bitmap = await fetchBitmap(`/api/images/${id}/segmentation`);
  segCache.set(id, bitmap);
  if (segCache.size > 48) segCache.delete(segCache.keys().next().value);
  return bitmap;
}

async function drawSegmentation(canvasId, id) {
  const c = $(canvasId);
  c.dataset.id = (state.segOn && id) || ""; // what it is to show; a newer call may change it before the answer
  c.hidden = !c.dataset.id;
  if (c.hidden) return;
  try {
    const bitmap = await segmentationOf(id);
    if (c.dataset.id === id) { drawBitmap(c, bitmap); c.dataset.shown = id; }
  } catch (_) { // an image the model cannot encode (no encoder) has no segmentation: its own request said why
    if (c.dataset.id === id) c.hidden = true;
  }
}

function drawSegmentations() {
  if (!state.caps || !state.caps.segmentation) return;
  const ref = state.refs[state.active];
  drawSegmentation("source-seg", state.source && state.source.id);
  drawSegmentation("ref-seg", ref && ref.id);
  drawSegmentation("result-seg", state.resultId);
}

// ---- model requests -----------------------------------------------------------------------------------------

function smallMask(ref) {
  const n = state.size;
  const small = makeCanvas(n, n);
  const ctx = small.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(ref.mask, 0, 0, n, n);
  return small;
}

// the PNG the page sends for a reference's mask (what an edit request carries)
function maskPng(ref) {
  return smallMask(ref).toDataURL("image/png");
}

function maskIsEmpty(small) {
  const data = small.getContext("2d").getImageData(0, 0, small.width, small.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return false;
  return true;
}

async function showResult(resp, rtt, seq, req) {
  const bitmap = await createImageBitmap(await resp.blob());
  const canvas = $("result-canvas");
  drawBitmap(canvas, bitmap);
  canvas.dataset.seq = String(seq);
  canvas.dataset.kind = req.kind;
  $("result-label").textContent = req.kind === "edit" ? "Result" : RECONSTRUCTION_LABEL;
  canvas.dataset.updates = String(Number(canvas.dataset.updates || 0) + 1);
  state.resultId = resp.headers.get("X-Image-Id");
  drawSegmentation("result-seg", state.resultId);
  for (const [id, suffix] of [["download-png", "download"], ["download-npz", "code"]]) {
    const a = $(id);
    a.href = `/api/images/${state.resultId}/${suffix}`;
    a.classList.remove("disabled");
  }
  // a result of an aligned photo: also downloadable as the whole photo with the face pasted back
  const photo = $("download-photo");
  photo.hidden = !(state.source && state.source.photo);
  photo.classList.toggle("disabled", photo.hidden);
  photo.href = photo.hidden ? "" : `/api/images/${state.resultId}/photo`;
  $("use-result").disabled = false;
  $("latency").textContent = timingText(resp, rtt);
}

const editRequest = new LatestRequest("edit", showResult);

// models with parts: the references' chosen parts and the removed ones (nothing chosen: the reconstruction)
function partEdit() {
  const references = state.refs.filter((r) => r !== null).map((r) => ({ id: r.id, parts: effectiveSwaps(r) }))
    .filter((r) => Object.keys(r.parts).length > 0);
  const remove = [...state.remove];
  if (references.length === 0 && remove.length === 0) {
    return { kind: "reconstruction", url: "/api/reconstruct", body: { id: state.source.id } };
  }
  return { kind: "edit", url: "/api/parts/swap", body: { source: state.source.id, references, remove, alpha: state.alpha } };
}

function requestEdit(urgent = false) {
  editRequest.trigger(() => {
    if (!state.source) return null;
    if (partMode()) return partEdit();
    const painted = state.refs.filter((r) => r !== null).map((r) => [r, smallMask(r)]).filter(([, m]) => !maskIsEmpty(m));
    // nothing painted yet: the result is the source's reconstruction, and it is labelled so
    if (painted.length === 0) return { kind: "reconstruction", url: "/api/reconstruct", body: { id: state.source.id } };
    return {
      kind: "edit",
      url: "/api/edit",
      body: {
        source: state.source.id,
        references: painted.map(([r, m]) => ({ id: r.id, mask: m.toDataURL("image/png"), shift: r.shift })), // = maskPng(r)
        mode: state.mode,
        alpha: state.alpha,
        feather: state.feather,
      },
    };
  }, urgent);
}

const reconRequest = new LatestRequest("reconstruct", async (resp, rtt) => {
  drawBitmap($("recon-canvas"), await createImageBitmap(await resp.blob()));
  $("recon-latency").textContent = timingText(resp, rtt);
});

async function refineSource() {
  if (!state.source) { showMessage("refining needs a source image", "info"); return; }
  const limit = state.info.limits.max_refine_steps;
  const asked = Math.floor(Number($("refine-steps").value));
  const steps = Math.min(limit, Number.isFinite(asked) && asked >= 1 ? asked : 100);
  $("refine-steps").value = String(steps);
  const source = state.source;
  $("refine").disabled = true;
  $("refine-info").textContent = `refining ${source.name} (${steps} steps)…`;
  busy(+1);
  try {
    const t0 = performance.now();
    const resp = await fetch("/api/refine", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ id: source.id, steps }),
    });
    if (!resp.ok) { showMessage(`refine: ${await errorText(resp)}`); $("refine-info").textContent = ""; return; }
    const desc = await resp.json();
    if (!desc.improved) {
      $("refine-info").textContent =
        `no improvement after ${desc.steps} steps (MSE ${desc.mse_before.toFixed(4)}); the source is unchanged`;
      return;
    }
    addUploadThumb(desc);
    const still = state.source === source; // the user may have picked another source meanwhile
    $("refine-info").textContent =
      `reconstruction MSE ${desc.mse_before.toFixed(4)} → ${desc.mse_after.toFixed(4)} ` +
      `(${desc.steps} steps, ${((performance.now() - t0) / 1000).toFixed(1)} s); ` +
      (still ? "the refined copy is now the source" : "kept in your uploads");
    if (still) await pick(desc, "source");
  } catch (err) {
    showMessage(`refine failed (${err.message || err})`);
  } finally {
    $("refine").disabled = false;
    busy(-1);
  }
}

function requestReconstruction() {
  reconRequest.trigger(() => (state.source ? { url: "/api/reconstruct", body: { id: state.source.id } } : null), true);
}

const attrRequest = new LatestRequest("attributes", async (resp, rtt) => {
  drawBitmap($("attr-canvas"), await createImageBitmap(await resp.blob()));
  $("attr-latency").textContent = timingText(resp, rtt);
});

function attributesOffered() {
  return Boolean(state.info) && (state.info.directions.length > 0 || state.features.part_directions);
}

function requestAttributes(urgent = false) {
  if (!attributesOffered()) return;
  attrRequest.trigger(() => {
    if (!state.source) return null;
    const strengths = {}; // every slider moved, whole-code and every part's
    for (const [name, value] of Object.entries(state.attrValues)) if (value !== 0) strengths[name] = value;
    return { url: "/api/attributes", body: { id: state.source.id, strengths } };
  }, urgent);
}

function sliderRow(d) {
  const row = document.createElement("label");
  row.className = d.supervised ? "attribute" : "attribute unsupervised";
  row.title = d.supervised
    ? `${d.label}: a direction learned from labelled images`
    : `${d.label}: a direction found without labels (${d.kind}); what it changes has no name`;
  const name = document.createElement("span");
  name.className = "attribute-label";
  name.textContent = d.label;
  const value = state.attrValues[d.name] || 0;
  const input = document.createElement("input");
  Object.assign(input, { type: "range", min: String(-d.range), max: String(d.range), step: String(d.range / 50), value: String(value) });
  input.dataset.name = d.name;
  const out = document.createElement("output");
  out.textContent = value ? value.toFixed(1) : "0";
  input.addEventListener("input", () => {
    state.attrValues[d.name] = Number(input.value);
    out.textContent = Number(input.value).toFixed(1);
    requestAttributes();
  });
  row.append(name, input, out);
  return row;
}

// a part's sliders: the directions file's, else PCA inside the part's rows (computed by the server once)
let partSlidersShown = "";
async function loadPartSliders() {
  const part = $("attr-part").value;
  const what = $("attr-what").value;
  const key = `${part}/${what}`;
  if (!part || key === partSlidersShown) return;
  partSlidersShown = key;
  $("attr-part-source").textContent = "loading…";
  busy(+1);
  try {
    const resp = await fetchRetrying(`/api/parts/directions?part=${encodeURIComponent(part)}&what=${what}`, {});
    if (!resp.ok) throw new Error(await errorText(resp));
    const body = await resp.json();
    if (partSlidersShown !== key) return; // another part was chosen meanwhile
    $("part-attributes").replaceChildren(...body.directions.map(sliderRow));
    $("attr-part-source").textContent = body.source === "file" ? "from the directions file"
      : "found without labels (PCA in this part's rows)";
  } catch (err) {
    partSlidersShown = "";
    $("attr-part-source").textContent = "";
    showMessage(`${part}: ${err.message || err}`);
  } finally {
    busy(-1);
  }
}

const interpRequest = new LatestRequest("interpolate", async (resp) => {
  const bitmap = await createImageBitmap(await resp.blob());
  const frames = Number(resp.headers.get("X-Frames"));
  state.interp = { bitmap, frames };
  const slider = $("interp-t");
  slider.max = String(frames - 1);
  slider.disabled = false;
  drawInterpolation();
});

function drawInterpolation() {
  if (!state.interp) return;
  const { bitmap, frames } = state.interp;
  const i = Number($("interp-t").value);
  const w = bitmap.width / frames;
  const c = $("interp-canvas");
  c.width = w;
  c.height = bitmap.height;
  c.getContext("2d").drawImage(bitmap, i * w, 0, w, bitmap.height, 0, 0, w, bitmap.height);
  $("interp-out").textContent = (i / (frames - 1)).toFixed(2);
}

const samplesRequest = new LatestRequest("samples", async (resp) => {
  const body = await resp.json();
  const box = $("samples");
  box.replaceChildren(...body.images.map(thumbButton));
});

// ---- wiring -------------------------------------------------------------------------------------------------

function bindRange(id, outId, apply, digits = 0) {
  const input = $(id);
  const update = () => {
    const v = Number(input.value);
    $(outId).textContent = v.toFixed(digits);
    apply(v);
  };
  input.addEventListener("input", update);
  update();
}

function setupControls() {
  $("message-close").addEventListener("click", () => { $("message").hidden = true; });
  $("upload-input").addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    if (file) uploadFile(file);
    ev.target.value = "";
  });
  for (const r of document.querySelectorAll('input[name="tool"]')) r.addEventListener("change", () => { state.tool = r.value; });
  for (const r of document.querySelectorAll('input[name="mode"]')) r.addEventListener("change", () => { state.mode = r.value; requestEdit(); });
  bindRange("brush-size", "brush-size-out", (v) => { state.brush = v; });
  bindRange("alpha", "alpha-out", (v) => { state.alpha = v; requestEdit(); }, 2);
  bindRange("feather", "feather-out", (v) => { state.feather = v; requestEdit(); });
  bindRange("trunc", "trunc-out", () => {}, 2);
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("clear").addEventListener("click", clearMask);
  $("reset-shift").addEventListener("click", () => {
    const ref = state.refs[state.active];
    if (ref) { ref.shift = [0, 0]; drawOverlay(); requestEdit(); }
  });
  document.addEventListener("keydown", (ev) => {
    if (!(ev.ctrlKey || ev.metaKey) || ev.target.matches("input[type=number], input[type=text]")) return;
    const key = ev.key.toLowerCase();
    if (key === "z" && !ev.shiftKey) { ev.preventDefault(); undo(); }
    else if ((key === "z" && ev.shiftKey) || key === "y") { ev.preventDefault(); redo(); }
  });
  $("refine").addEventListener("click", refineSource);
  $("use-result").addEventListener("click", () => {
    if (state.resultId) pick({ id: state.resultId, name: "result" }, "source");
  });
  const generate = () => samplesRequest.trigger(() => ({
    url: "/api/samples",
    body: { seed: Math.max(0, Math.floor(Number($("seed").value) || 0)), trunc: Number($("trunc").value), count: 4 },
  }), true);
  $("generate").addEventListener("click", generate);
  $("generate-random").addEventListener("click", () => { $("seed").value = String(Math.floor(Math.random() * 1e6)); generate(); });
  $("interpolate").addEventListener("click", () => {
    const ref = state.refs[state.active];
    if (!state.source || !ref) { showMessage("interpolation needs a source and an active reference", "info"); return; }
    interpRequest.trigger(() => {
      if (!partMode()) return { url: "/api/interpolate", body: { a: state.source.id, b: ref.id, frames: 9 } };
      const chosen = effectiveSwaps(ref); // only the active reference's chosen parts move (none chosen: all)
      const whats = new Set(Object.values(chosen));
      const parts = Object.keys(chosen);
      return {
        url: "/api/parts/interpolate",
        body: { a: state.source.id, b: ref.id, parts: parts.length ? parts : null, what: whats.size === 1 ? [...whats][0] : "both", frames: 9 },
      };
    }, true);
  });
  $("interp-t").addEventListener("input", drawInterpolation);
  $("attributes-reset").addEventListener("click", () => {
    for (const name of Object.keys(state.attrValues)) state.attrValues[name] = 0;
    for (const input of $("attributes-box").querySelectorAll("input[type=range]")) { input.value = "0"; input.dispatchEvent(new Event("input")); }
    requestAttributes();
  });
  $("seg-toggle").addEventListener("change", (ev) => { state.segOn = ev.target.checked; drawSegmentations(); });
  $("attr-part").addEventListener("change", loadPartSliders);
  $("attr-what").addEventListener("change", loadPartSliders);
  $("attributes-box").addEventListener("toggle", () => { if ($("attributes-box").open) loadPartSliders(); });
}

function setupInfo(info) {
  state.info = info;
  state.caps = info.capabilities;
  state.features = info.features;
  const align = $("upload-align");  // ticked for face models when the landmark model is installed
  align.disabled = !(info.align && info.align.available);
  align.checked = Boolean(info.align && info.align.default);
  state.size = info.model.size;
  state.scale = Math.max(1, Math.ceil(256 / state.size));
  const m = info.model;
  $("model-info").textContent = `${m.name} · ${m.family} · ${m.size}px · code ${m.code_shape.join("×")} · ${m.device}`;
  setupControlsFor(state.caps, state.features);
  $("refine-steps").max = String(info.limits.max_refine_steps);
  $("brush-size").max = String(Math.max(4, Math.round(state.size / 3)));
  $("brush-size").value = String(Math.max(1, Math.round(state.size / 12)));
  $("brush-size").dispatchEvent(new Event("input"));
  for (const id of ["source-canvas", "ref-canvas", "result-canvas"]) { $(id).width = state.size; $(id).height = state.size; }
  const gallerySource = info.gallery.images.length ? info.gallery.source : `no gallery: ${info.gallery.source}`;
  $("gallery-source").textContent = gallerySource; // a short name (never a server path), cut with an ellipsis
  $("gallery-source").title = gallerySource;
  $("gallery").replaceChildren(...info.gallery.images.map(thumbButton));
  if (info.uploads.length) {
    $("uploads").replaceChildren();
    for (const desc of info.uploads) addUploadThumb(desc);
  }
  const parts = $("parts");
  parts.replaceChildren(...info.parts.map((name) => {
    const b = document.createElement("button");
    b.textContent = name.replace("_", " ");
    b.dataset.part = name;
    b.addEventListener("click", () => applyPart(name));
    return b;
  }));
  $("clusters").replaceChildren(...(info.clusters || []).map((cluster) => {
    const b = document.createElement("button");
    b.textContent = cluster.label.replace("_", " ");
    b.title = `${cluster.label}: a part cluster found without labels (stylemapgan clusters), from the image's own features`;
    b.dataset.cluster = String(cluster.id);
    b.addEventListener("click", () => applyCluster(cluster));
    return b;
  }));
  $("attributes-box").hidden = !attributesOffered();
  $("attributes").replaceChildren(...info.directions.map(sliderRow)); // whole-code sliders
  if (!info.gallery.images.length) $("samples-box").open = true; // no gallery: samples are the images to start from
  renderSlots();
  renderParts();
  drawReference();
  drawOverlay();
}

// show the controls of what the model can do (never by its family's name)
function setupControlsFor(caps, features) {
  const parts = caps.parts.length > 0;
  $("workspace-title").textContent = caps.masks ? "2 · Paint, drag, blend" : parts ? "2 · Swap parts" : "2 · Edit";
  $("source-hint").textContent = caps.shifts ? "(drag to move the active region)" : "";
  $("ref-hint").textContent = caps.masks ? "(paint the region to paste)" : parts ? "(paint to choose parts)" : "";
  $("mask-legend").textContent = caps.masks ? "Mask" : "Mask (chooses the parts it covers)";
  $("mask-box").hidden = !caps.masks && !(parts && caps.segmentation);
  $("reset-shift").hidden = !caps.shifts;
  $("mode-row").hidden = caps.latent_modes.length === 0;
  for (const r of document.querySelectorAll('input[name="mode"]')) r.parentElement.hidden = !caps.latent_modes.includes(r.value);
  $("feather-row").hidden = !caps.masks;
  $("blend-box").hidden = !caps.masks && !parts;
  $("part-box").hidden = !parts;
  $("seg-toggle-label").hidden = !caps.segmentation;
  $("refine-row").hidden = !features.refine;
  if (!features.refine) $("refine-info").textContent = "The model's rendering of the source's code.";
  $("download-npz").textContent = `Code ${caps.code_suffix}`;
  $("attr-part-row").hidden = !features.part_directions;
  $("attr-what-label").hidden = !caps.shape_texture;
  $("attr-part").replaceChildren(...(features.part_directions ? caps.parts : []).map((part) => {
    const option = document.createElement("option");
    option.value = part;
    option.textContent = part.replace("_", " ");
    return option;
  }));
  if (parts) buildPartList();
}

async function main() {
  setupControls();
  setupPainting();
  setupDragging();
  try {
    const resp = await fetch("/api/info");
    if (!resp.ok) throw new Error(await errorText(resp));
    setupInfo(await resp.json());
    document.body.dataset.ready = "1";
  } catch (err) {
    showMessage(`cannot reach the server: ${err.message || err}`);
  }
}

main();
