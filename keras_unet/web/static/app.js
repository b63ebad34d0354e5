// The page's behaviour: upload songs, follow each job's progress, show its results.
// Talks only to this server's JSON API (keras_unet/web/webapp.py); no library, no build step.
"use strict";

const OTHER_MODEL = "";  // the selector's value for "a path typed below"
const POLL_MILLISECONDS = 500;
const FINISHED = new Set(["done", "failed"]);

const cards = new Map();  // job id -> its <article>
let maxUploadBytes = Infinity;
let maxUploadText = "";

function element(selector, root = document) {
  return root.querySelector(selector);
}

async function answer(response) {
  // The JSON body of an API response; a refusal becomes an Error with the server's message.
  let body = {};
  try {
    body = await response.json();
  } catch (_) {
    body = { error: `the server answered ${response.status} ${response.statusText}` };
  }
  if (!response.ok) {
    throw new Error(body.error || `the server answered ${response.status}`);
  }
  return body;
}

function showPageError(message) {
  const paragraph = element("#page-error");
  paragraph.textContent = message;
  paragraph.hidden = !message;
}

// --- the model selector ---

async function loadConfig() {
  const config = await answer(await fetch("/api/config"));
  maxUploadBytes = config.max_upload_bytes;
  maxUploadText = config.max_upload_text;
  element("#limit").textContent = maxUploadText;
  const select = element("#model");
  for (const model of config.models) {
    const option = new Option(model.name, model.path);
    option.title = model.path;
    select.add(option);
  }
  select.add(new Option("another model file or folder…", OTHER_MODEL));
  const listed = config.models.some((model) => model.path === config.default);
  select.value = listed ? config.default : OTHER_MODEL;
  if (!listed) {
    element("#model-path").value = config.default;
  }
  select.addEventListener("change", showModelPath);
  showModelPath();
}

function showModelPath() {
  const typed = element("#model").value === OTHER_MODEL;
  element("#model-path").hidden = !typed;
  if (typed) {
    element("#model-path").focus();
  }
}

function chosenModel() {
  const value = element("#model").value;
  return value === OTHER_MODEL ? element("#model-path").value.trim() : value;
}

// --- one card per song ---

function newCard(name) {
  const card = element("#song-template").content.firstElementChild.cloneNode(true);
  element(".name", card).textContent = name;
  element(".remove", card).addEventListener("click", () => removeCard(card));
  element("#songs").append(card);
  return card;
}

function setStatus(card, stage, progress) {
  element(".stage", card).textContent = stage;
  const bar = element("progress", card);
  bar.value = progress;
  bar.setAttribute("aria-label", stage);
}

function setMessage(card, selector, message) {
  const paragraph = element(selector, card);
  paragraph.textContent = message || "";
  paragraph.hidden = !message;
}

function fail(card, message) {
  card.dataset.state = "failed";
  setStatus(card, "failed", 0);
  setMessage(card, ".error", message);
}

function fileUrl(job, file, download) {
  return `/api/jobs/${encodeURIComponent(job.id)}/${file}${download ? "?download=1" : ""}`;
}

function render(card, job) {
  // Shows a job's state as the server reports it.
  card.dataset.state = job.state;
  element(".name", card).textContent = job.name;
  const percent = Math.floor(100 * job.progress);
  const stage = job.state === "running" && job.stage === "separating"
    ? `separating: ${percent}%` : job.stage;
  setStatus(card, stage, job.progress);
  setMessage(card, ".error", job.error);
  setMessage(card, ".warning", job.warning && `Note: ${job.warning}`);
  if (job.state !== "done" || !element(".result", card).hidden) {
    return;
  }
  element(".figure", card).src = fileUrl(job, "spectrograms.png");
  for (const figure of card.querySelectorAll(".players figure")) {
    const part = figure.dataset.part;
    element("audio", figure).src = fileUrl(job, `${part}.wav`);
    for (const link of figure.querySelectorAll("a[data-format]")) {
      const file = `${part}.${link.dataset.format}`;
      link.href = fileUrl(job, file, true);
      link.download = job.downloads[file];
    }
  }
  element(".model", card).textContent = `Model: ${job.model}`;
  element(".result", card).hidden = false;
}

async function removeCard(card) {
  const id = card.dataset.id;
  if (id) {
    try {
      await answer(await fetch(`/api/jobs/${encodeURIComponent(id)}`, { method: "DELETE" }));
    } catch (error) {
      if (!/no such song/.test(error.message)) {
        setMessage(card, ".error", error.message);
        return;
      }
    }
    cards.delete(id);
  }
  if (card.upload) {
    card.upload.abort();
  }
  card.remove();
}

// --- uploads ---

function upload(file) {
  const card = newCard(file.name);
  if (file.size > maxUploadBytes) {
    fail(card, `${file.name}: file too large: uploads are limited to ${maxUploadText} ` +
               "(start the server with a larger --max-upload-mb to accept it)");
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("model", chosenModel());
  const request = new XMLHttpRequest();  // fetch() reports no upload progress
  card.upload = request;
  request.open("POST", "/api/jobs");
  request.responseType = "json";
  request.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) {
      const share = event.loaded / event.total;
      setStatus(card, `uploading: ${Math.floor(100 * share)}%`, share);
    }
  });
  request.addEventListener("load", () => {
    card.upload = null;
    const body = request.response || {};
    if (request.status !== 202) {
      fail(card, `${file.name}: ${body.error || `the server answered ${request.status}`}`);
      return;
    }
    card.dataset.id = body.job.id;
    cards.set(body.job.id, card);
    render(card, body.job);
  });
  request.addEventListener("error", () => {
    card.upload = null;
    fail(card, `${file.name}: the upload failed (is the server still running?)`);
  });
  setStatus(card, "uploading", 0);
  request.send(form);
}

function uploadAll(files) {
  showPageError("");
  for (const file of files) {
    upload(file);
  }
}

function setUpDropping() {
  const drop = element("#drop");
  const input = element("#files");
  input.addEventListener("change", () => {
    uploadAll(Array.from(input.files));
    input.value = "";
  });
  // A file dropped anywhere else must not make the browser leave the page to open it.
  for (const name of ["dragover", "drop"]) {
    window.addEventListener(name, (event) => event.preventDefault());
  }
  drop.addEventListener("dragover", () => drop.classList.add("over"));
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    drop.classList.remove("over");
    uploadAll(Array.from(event.dataTransfer.files));
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
}

// --- following the jobs ---

async function poll() {
  for (const [id, card] of cards) {
    if (FINISHED.has(card.dataset.state)) {
      continue;
    }
    try {
      const body = await answer(await fetch(`/api/jobs/${encodeURIComponent(id)}`));
      render(card, body.job);
    } catch (error) {
      fail(card, error.message);
    }
  }
  window.setTimeout(poll, POLL_MILLISECONDS);
}

async function showEarlierJobs() {
  // After a reload, the songs the server still holds.
  const body = await answer(await fetch("/api/jobs"));
  for (const job of body.jobs) {
    const card = newCard(job.name);
    card.dataset.id = job.id;
    cards.set(job.id, card);
    render(card, job);
  }
}

async function start() {
  setUpDropping();
  try {
    await loadConfig();
    await showEarlierJobs();
  } catch (error) {
    showPageError(`The server cannot be reached: ${error.message}`);
  }
  poll();
}

start();
