// The gankit serve page: plain JS, no build step. One tab per task of the loaded models.
"use strict";

const $ = (id) => document.getElementById(id);
const VIEW = 384; // CSS pixels of the image stages
const page = (window.gankitPage = { models: [], last: {} }); // `last` lets tests read what was sent and received

function showError(msg) {
  const el = $("error");
  el.textContent = msg || "";
  el.hidden = !msg;
}

async function apiError(resp) {
  try {
    const body = await resp.json();
    return `${resp.status}: ${body.error || JSON.stringify(body)}`;
  } catch (_) {
    return `${resp.status}: ${resp.statusText}`;
  }
}

function fillSelect(select, items) {
  select.innerHTML = "";
  for (const [value, text] of items) {
    const opt = document.createElement("option");
    opt.value = value;
    opt.textContent = text;
    select.appendChild(opt);
  }
}

function fitSize(w, h) {
  const s = Math.min(VIEW / w, VIEW / h);
  return [Math.round(w * s), Math.round(h * s)];
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("cannot read that image"));
    img.src = url;
  });
}

// ------------------------------------------------------------------ tabs
function selectTab(task) {
  for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-selected", String(b.dataset.task === task));
  for (const t of ["generate", "inpaint", "restore"]) $(`panel-${t}`).hidden = t !== task;
  showError("");
}

function buildTabs(models) {
  const labels = { generate: "Generate", inpaint: "Inpaint", restore: "Restore" };
  const tasks = ["generate", "inpaint", "restore"].filter((t) => models.some((m) => m.task === t));
  const nav = $("tabs");
  nav.innerHTML = "";
  for (const t of tasks) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.task = t;
    b.id = `tab-${t}`;
    b.setAttribute("role", "tab");
    b.textContent = labels[t];
    b.onclick = () => selectTab(t);
    nav.appendChild(b);
    const what = (m) => m.task === "restore"
      ? `×${m.scale}${m.degradation ? " " + m.degradation : ""}` : `${m.channels}×${m.height}×${m.width}`;
    const list = models.filter((m) => m.task === t).map((m) => [m.name, `${m.name} (${m.plugin}, ${what(m)})`]);
    fillSelect($({ generate: "gen-model", inpaint: "inp-model", restore: "res-model" }[t]), list);
  }
  if (tasks.length) selectTab(tasks[0]);
}

// ------------------------------------------------------------------ generate
function genModel() {
  return page.models.find((m) => m.name === $("gen-model").value);
}

function onGenModel() {
  const m = genModel();
  if (!m) return;
  const classes = [["", m.num_classes ? "all classes" : "(unconditional)"]];
  m.class_names.forEach((name, i) => classes.push([String(i), `${i}: ${name}`]));
  fillSelect($("gen-class"), classes);
  $("gen-class").disabled = !m.num_classes;
  $("gen-trunc-wrap").hidden = !m.truncation;
}

function genBody() {
  const m = genModel();
  const body = { n: Math.max(1, Math.min(64, parseInt($("gen-n").value, 10) || 1)) };
  const seed = parseInt($("gen-seed").value, 10);
  if (Number.isFinite(seed) && seed >= 0) body.seed = seed;
  if (m.num_classes && $("gen-class").value !== "") body.labels = parseInt($("gen-class").value, 10);
  if (m.truncation) body.truncation = parseFloat($("gen-trunc").value);
  return body;
}

async function runGenerate() {
  showError("");
  const m = genModel();
  const body = genBody();
  $("gen-run").disabled = true;
  try {
    const resp = await fetch(`/v1/models/${encodeURIComponent(m.name)}/generate`, {
      method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify(body),
    });
    if (!resp.ok) throw new Error(await apiError(resp));
    const data = await resp.json();
    const grid = $("gen-grid");
    grid.innerHTML = "";
    data.images.forEach((b64, i) => {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.src = `data:image/png;base64,${b64}`;
      img.alt = `sample ${i}`;
      fig.appendChild(img);
      if (data.labels) {
        const cap = document.createElement("figcaption");
        cap.textContent = m.class_names[data.labels[i]] ?? String(data.labels[i]);
        fig.appendChild(cap);
      }
      grid.appendChild(fig);
    });
    $("gen-seed").value = data.seed;
    page.lastGenerate = { body: { ...body, seed: data.seed }, model: m.name };
    $("gen-download").disabled = false;
  } catch (e) {
    showError(e.message);
  } finally {
    $("gen-run").disabled = false;
  }
}

async function downloadGrid() {
  const g = page.lastGenerate;
  if (!g) return;
  const resp = await fetch(`/v1/models/${encodeURIComponent(g.model)}/generate`, {
    method: "POST", headers: { "Content-Type": "application/json", Accept: "image/png" }, body: JSON.stringify(g.body),
  });
  if (!resp.ok) return showError(await apiError(resp));
  const a = document.createElement("a");
  a.href = URL.createObjectURL(await resp.blob());
  a.download = `${g.model}-seed${g.body.seed}.png`;
  a.click();
}

// ------------------------------------------------------------------ inpaint: image + brush mask
const inp = { undo: [], drawing: false, last: null, imageBlob: null };

// an uploaded or sample image as {url, img}, or null after showing why it cannot be read
async function openImage(blob) {
  showError("");
  const url = URL.createObjectURL(blob);
  try {
    return { url, img: await loadImage(url) };
  } catch (e) {
    showError(e.message);
    return null;
  }
}

async function setInpaintImage(blob) {
  const opened = await openImage(blob);
  if (!opened) return;
  const { url, img } = opened;
  inp.imageBlob = blob;
  const [cw, ch] = fitSize(img.naturalWidth, img.naturalHeight);
  for (const c of [$("inp-image"), $("inp-mask")]) {
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
  }
  Object.assign($("inp-layers").style, { width: `${cw}px`, height: `${ch}px` });
  $("inp-image").getContext("2d").drawImage(img, 0, 0);
  inp.undo = [];
  $("inp-undo").disabled = true;
  $("inp-result").removeAttribute("src");
  $("inp-download").hidden = true;
  $("inp-run").disabled = false;
}

function maskPoint(e) {
  const c = $("inp-mask");
  const r = c.getBoundingClientRect();
  return [((e.clientX - r.left) * c.width) / r.width, ((e.clientY - r.top) * c.height) / r.height];
}

function brushWidth() {
  // the slider is in screen pixels; the mask canvas is in image pixels
  const c = $("inp-mask");
  return Math.max(1, (parseInt($("inp-brush").value, 10) * c.width) / c.getBoundingClientRect().width);
}

function stroke(from, to) {
  const ctx = $("inp-mask").getContext("2d");
  ctx.strokeStyle = ctx.fillStyle = "rgba(255, 0, 255, 0.7)";
  ctx.lineWidth = brushWidth();
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from[0], from[1]);
  ctx.lineTo(to[0], to[1]);
  ctx.stroke();
}

function setupBrush() {
  const c = $("inp-mask");
  c.addEventListener("pointerdown", (e) => {
    if (!inp.imageBlob) return;
    const ctx = c.getContext("2d");
    inp.undo.push(ctx.getImageData(0, 0, c.width, c.height));
    if (inp.undo.length > 30) inp.undo.shift();
    $("inp-undo").disabled = false;
    inp.drawing = true;
    inp.last = maskPoint(e);
    stroke(inp.last, inp.last);
    c.setPointerCapture(e.pointerId);
  });
  c.addEventListener("pointermove", (e) => {
    if (!inp.drawing) return;
    const p = maskPoint(e);
    stroke(inp.last, p);
    inp.last = p;
  });
  const end = () => (inp.drawing = false);
  c.addEventListener("pointerup", end);
  c.addEventListener("pointercancel", end);
  $("inp-undo").onclick = () => {
    const snap = inp.undo.pop();
    if (snap) c.getContext("2d").putImageData(snap, 0, 0);
    $("inp-undo").disabled = !inp.undo.length;
  };
  $("inp-clear").onclick = () => {
    const ctx = c.getContext("2d");
    inp.undo.push(ctx.getImageData(0, 0, c.width, c.height));
    $("inp-undo").disabled = false;
    ctx.clearRect(0, 0, c.width, c.height);
  };
  $("inp-brush").oninput = () => ($("inp-brush-value").textContent = $("inp-brush").value);
}

function maskBlob() {
  // white where anything was painted, black elsewhere, at the image's own size
  const c = $("inp-mask");
  const src = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const out = document.createElement("canvas");
  out.width = c.width;
  out.height = c.height;
  const ctx = out.getContext("2d");
  const img = ctx.createImageData(c.width, c.height);
  let painted = 0;
  for (let i = 0; i < src.length; i += 4) {
    const v = src[i + 3] > 0 ? 255 : 0;
    painted += v ? 1 : 0;
    img.data[i] = img.data[i + 1] = img.data[i + 2] = v;
    img.data[i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return new Promise((resolve) => out.toBlob((b) => resolve([b, painted]), "image/png"));
}

async function runInpaint() {
  showError("");
  const [mask, painted] = await maskBlob();
  if (!painted) return showError("paint the part to replace first");
  const model = $("inp-model").value;
  const form = new FormData();
  form.append("image", inp.imageBlob, "image.png");
  form.append("mask", mask, "mask.png");
  $("inp-run").disabled = true;
  try {
    const resp = await fetch(`/v1/models/${encodeURIComponent(model)}/inpaint`, { method: "POST", body: form });
    if (!resp.ok) throw new Error(await apiError(resp));
    const result = await resp.blob();
    page.last = { image: inp.imageBlob, mask, result };
    const url = URL.createObjectURL(result);
    const img = await loadImage(url);
    const [cw, ch] = fitSize(img.naturalWidth, img.naturalHeight);
    Object.assign($("inp-result"), { src: url });
    Object.assign($("inp-result").style, { width: `${cw}px`, height: `${ch}px` });
    Object.assign($("inp-download"), { href: url, hidden: false });
    document.body.dataset.inpaintDone = String((page.inpaintCount = (page.inpaintCount || 0) + 1));
  } catch (e) {
    showError(e.message);
  } finally {
    $("inp-run").disabled = false;
  }
}

// ------------------------------------------------------------------ restore
const res = { imageBlob: null };

async function setRestoreImage(blob) {
  const opened = await openImage(blob);
  if (!opened) return;
  const { url, img } = opened;
  res.imageBlob = blob;
  const [cw, ch] = fitSize(img.naturalWidth, img.naturalHeight);
  Object.assign($("res-before"), { src: url });
  Object.assign($("res-before").style, { width: `${cw}px`, height: `${ch}px` });
  $("res-result").removeAttribute("src");
  $("res-download").hidden = true;
  $("res-run").disabled = false;
}

async function runRestore() {
  showError("");
  const form = new FormData();
  form.append("image", res.imageBlob, "image.png");
  $("res-run").disabled = true;
  try {
    const resp = await fetch(`/v1/models/${encodeURIComponent($("res-model").value)}/restore`, { method: "POST", body: form });
    if (!resp.ok) throw new Error(await apiError(resp));
    const url = URL.createObjectURL(await resp.blob());
    const img = await loadImage(url);
    const [cw, ch] = fitSize(img.naturalWidth, img.naturalHeight);
    Object.assign($("res-result"), { src: url });
    Object.assign($("res-result").style, { width: `${cw}px`, height: `${ch}px` });
    Object.assign($("res-download"), { href: url, hidden: false });
  } catch (e) {
    showError(e.message);
  } finally {
    $("res-run").disabled = false;
  }
}

// ------------------------------------------------------------------ samples and start-up
async function fetchSample(name) {
  const resp = await fetch(`/v1/samples/${encodeURIComponent(name)}.png`);
  if (!resp.ok) throw new Error(await apiError(resp));
  return resp.blob();
}

async function waitReady() {
  for (;;) {
    const resp = await fetch("/readyz");
    if (resp.ok) return;
    const body = await resp.json().catch(() => ({}));
    $("status").textContent = body.error || "warming up…";
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function main() {
  setupBrush();
  $("gen-model").onchange = onGenModel;
  $("gen-run").onclick = runGenerate;
  $("gen-download").onclick = downloadGrid;
  $("gen-random").onclick = () => ($("gen-seed").value = Math.floor(Math.random() * 2 ** 31));
  $("gen-trunc").oninput = () => ($("gen-trunc-value").textContent = parseFloat($("gen-trunc").value).toFixed(2));
  $("inp-run").onclick = runInpaint;
  $("res-run").onclick = runRestore;
  $("inp-file").onchange = (e) => e.target.files[0] && setInpaintImage(e.target.files[0]);
  $("res-file").onchange = (e) => e.target.files[0] && setRestoreImage(e.target.files[0]);
  for (const [sel, set] of [["inp-sample", setInpaintImage], ["res-sample", setRestoreImage]]) {
    $(sel).onchange = async (e) => {
      if (!e.target.value) return;
      try {
        await set(await fetchSample(e.target.value));
      } catch (err) {
        showError(err.message);
      }
    };
  }
  try {
    const [models, samples] = await Promise.all([
      fetch("/v1/models").then((r) => r.json()),
      fetch("/v1/samples").then((r) => r.json()),
    ]);
    page.models = models.models;
    for (const sel of ["inp-sample", "res-sample"]) fillSelect($(sel), [["", "—"], ...samples.samples.map((s) => [s.name, s.name])]);
    buildTabs(page.models);
    onGenModel();
    await waitReady();
    $("status").textContent = `ready: ${page.models.length} model${page.models.length === 1 ? "" : "s"}`;
    $("status").classList.add("ready");
    document.body.dataset.ready = "1";
  } catch (e) {
    showError(`cannot reach the server: ${e.message}`);
  }
}

main();
