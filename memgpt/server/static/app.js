// memgpt reader: a document beside its outline and answers, every citation a link to its characters.
// Talks to the server's own /v1 routes only; document text is always inserted as text (textContent).
"use strict";

const KEY_ITEM = "memgpt-api-key";
const POLL_MS = 250;
const SUMMARY_TOKENS = 200; // what `memgpt summarize` gives by default
const $ = (id) => document.getElementById(id);
const view = { id: null, text: "", astral: false, poll: null };

// ---- talking to the server ------------------------------------------------------------------------
class ServerError extends Error {}

async function api(method, path, body) {
  const headers = {};
  const key = sessionStorage.getItem(KEY_ITEM);
  if (key) headers.Authorization = "Bearer " + key;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload });
  } catch (e) {
    throw new ServerError("cannot reach the server (" + e.message + ")");
  }
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const message = data && data.error && data.error.message ? data.error.message : "HTTP " + response.status;
    if (response.status === 401) $("key-form").hidden = false;
    throw new ServerError(message);
  }
  if (data === null) throw new ServerError("the server's answer was not JSON (HTTP " + response.status + ")");
  return data;
}

function showError(e) {
  const box = $("error");
  box.textContent = e instanceof Error ? e.message : String(e);
  box.hidden = false;
  if (!(e instanceof ServerError)) console.warn(e); // our own slip: say it, but keep the page
}

function clearError() { $("error").hidden = true; $("error").textContent = ""; }
function say(text) { $("status").textContent = text; }

// Every handler runs through here: an error is shown on the page, never left uncaught.
function guarded(fn) {
  return async (event) => {
    if (event && event.preventDefault) event.preventDefault();
    try { clearError(); await fn(event); } catch (e) { showError(e); }
  };
}

// ---- offsets: the server counts code points, JavaScript strings count UTF-16 units -------------------
function utf16Offset(text, codePoints) {
  if (!view.astral) return codePoints <= text.length ? codePoints : -1;
  let i = 0, n = 0;
  while (n < codePoints && i < text.length) {
    const c = text.charCodeAt(i);
    const pair = c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00;
    i += pair ? 2 : 1;
    n += 1;
  }
  return n === codePoints ? i : -1;
}

// The UTF-16 range of a citation, or null when it cannot be placed exactly (then nothing is highlighted).
function placed(cite) {
  const ok = (v) => Number.isInteger(v) && v >= 0;
  if (!cite || !ok(cite.start) || !ok(cite.end) || cite.end <= cite.start) return null;
  const start = utf16Offset(view.text, cite.start);
  const end = start < 0 ? -1 : utf16Offset(view.text, cite.end);
  if (start < 0 || end < 0) return null;
  if (typeof cite.text === "string" && view.text.slice(start, end) !== cite.text) return null;
  return [start, end];
}

// ---- the document view ----------------------------------------------------------------------------
function showDocument(text) {
  view.text = text;
  view.astral = /[\ud800-\udfff]/.test(text);
  $("document").textContent = text;
  $("cite-note").textContent = "";
}

function highlight(cite) {
  const doc = $("document");
  const range = placed(cite);
  if (range === null) {
    doc.textContent = view.text;
    $("cite-note").textContent = "This citation does not match the document's text, so nothing is highlighted.";
    return;
  }
  const [start, end] = range;
  const mark = document.createElement("mark");
  mark.textContent = view.text.slice(start, end);
  mark.tabIndex = -1;
  doc.replaceChildren(document.createTextNode(view.text.slice(0, start)), mark,
                      document.createTextNode(view.text.slice(end)));
  $("cite-note").textContent = "Highlighted characters " + cite.start + "-" + cite.end + ".";
  mark.scrollIntoView({ block: "center" });
  mark.focus({ preventScroll: true });
}

// A citation as a link: `label` shown, `cite` = {start, end, text} in the document.
function citeLink(label, cite) {
  const a = document.createElement("a");
  a.href = "#document";
  a.className = "cite";
  a.textContent = label;
  a.dataset.start = cite.start;
  a.dataset.end = cite.end;
  a.addEventListener("click", (event) => { event.preventDefault(); highlight(cite); });
  return a;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

// "[start-end; p. 3, Part > Chapter]": offsets, then the page and heading a formatted document gives.
function where(cite) {
  const from = [];
  if (Number.isInteger(cite.page)) from.push("p. " + cite.page);
  if (typeof cite.heading === "string" && cite.heading) from.push(cite.heading);
  const at = cite.start + "-" + cite.end + (from.length ? "; " + from.join(", ") : "");
  return el("span", " [" + at + "]", "where");
}

// ---- outline ----------------------------------------------------------------------------------------
function showOutline(summary) {
  const box = $("outline");
  box.replaceChildren();
  const about = summary.about || [];
  const parts = summary.parts || [];
  if (about.length) {
    box.append(el("h3", "About"));
    const list = el("ul");
    for (const term of about) {
      const li = el("li");
      li.append(citeLink(term.text, term.citation), el("span", " (" + term.count + ")", "where"));
      list.append(li);
    }
    box.append(list);
  }
  if (parts.length) {
    box.append(el("h3", "Parts"));
    const ol = el("ol");
    for (const part of parts) {
      const li = el("li");
      li.append(el("strong", part.heading));
      const quotes = el("ul");
      for (const sentence of part.sentences) {
        for (const cite of sentence.citations) {
          const q = el("li");
          q.append(citeLink(sentence.text, cite), where(cite));
          quotes.append(q);
        }
      }
      li.append(quotes);
      ol.append(li);
    }
    box.append(ol);
  }
  if (!about.length && !parts.length) {  // a summary without an outline: its sentences, each cited
    const list = el("ul");
    for (const sentence of summary.sentences || []) {
      const li = el("li");
      if (sentence.citations.length) sentence.citations.forEach((c) => li.append(citeLink(sentence.text, c), where(c)));
      else li.textContent = sentence.text;
      list.append(li);
    }
    box.append(list);
  }
}

// ---- memories -----------------------------------------------------------------------------------------
async function refreshMemories() {
  const list = await api("GET", "/v1/memories");
  const ul = $("memories");
  ul.replaceChildren();
  if (!list.data.length) ul.append(el("li", "none yet", "note"));
  for (const m of list.data) {
    const li = el("li");
    if (m.id === view.id) li.className = "current";
    li.append(el("span", (m.name || m.id) + " — " + m.status));
    li.append(el("br"));
    const open = el("button", "Open");
    open.type = "button";
    open.setAttribute("aria-label", "Open " + (m.name || m.id));
    open.addEventListener("click", guarded(() => openMemory(m.id)));
    const del = el("button", "Delete");
    del.type = "button";
    del.setAttribute("aria-label", "Delete " + (m.name || m.id));
    del.addEventListener("click", guarded(() => deleteMemory(m.id)));
    li.append(open, del);
    ul.append(li);
  }
}

async function deleteMemory(id) {
  await api("DELETE", "/v1/memories/" + encodeURIComponent(id));
  if (id === view.id) {
    view.id = null;
    showDocument("");
    $("outline").replaceChildren(el("p", "Open a document to see its outline.", "note"));
    $("answers").replaceChildren();
  }
  say("Deleted " + id + ".");
  await refreshMemories();
}

function progressText(record) {
  if (record.status === "queued") return "queued";
  if (!record.tokens_total) return "counting tokens";
  return Math.round(100 * record.progress) + "% read (" + record.tokens_read.toLocaleString() + " of " +
    record.tokens_total.toLocaleString() + " tokens)";
}

// Poll until the memory is ready or failed, showing its progress.
async function waitReady(id) {
  const bar = $("progress");
  bar.hidden = false;
  try {
    for (;;) {
      const record = await api("GET", "/v1/memories/" + encodeURIComponent(id));
      if (id !== view.id) return null; // another memory was opened meanwhile
      if (record.status === "ready") return record;
      if (record.status === "failed") throw new ServerError(record.error ? record.error.message : "the reading failed");
      bar.value = record.progress || 0;
      say("Reading " + (record.name || id) + ": " + progressText(record));
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  } finally {
    bar.hidden = true;
  }
}

async function openMemory(id) {
  view.id = id;
  $("answers").replaceChildren();
  $("outline").replaceChildren(el("p", "Reading…", "note"));
  const docPromise = api("GET", "/v1/memories/" + encodeURIComponent(id) + "/document");
  docPromise.catch(() => {}); // awaited below; a failure is shown there
  const record = await waitReady(id);
  if (record === null) return;
  say("Outlining " + (record.name || id) + "…");
  const [doc, reply] = await Promise.all([docPromise, api("POST", "/v1/chat/completions", {
    model: "default", memory: id, memory_task: "summarize", max_tokens: SUMMARY_TOKENS,
    messages: [{ role: "user", content: "Summarize the document." }],
  })]);
  if (id !== view.id) return;
  showDocument(doc.text);
  showOutline(reply.summary || { sentences: [] });
  say((record.name || id) + ": " + record.tokens_read.toLocaleString() + " tokens, outlined.");
  document.body.dataset.ready = id;
  await refreshMemories();
}

async function readDocument() {
  const file = $("file").files[0];
  const text = $("paste").value;
  const name = $("name").value.trim() || (file ? file.name : null);
  let record;
  delete document.body.dataset.ready;
  $("read").disabled = true;
  try {
    say("Sending…");
    if (file) {
      const form = new FormData();
      form.append("file", file);
      if (name) form.append("name", name);
      record = await api("POST", "/v1/memories", form);
    } else {
      record = await api("POST", "/v1/memories", name ? { text, name } : { text });
    }
  } finally {
    $("read").disabled = false;
    say("");
  }
  $("file").value = "";
  $("paste").value = "";
  await refreshMemories();
  await openMemory(record.id);
}

// ---- questions ------------------------------------------------------------------------------------------
async function askQuestion() {
  const question = $("question").value.trim();
  if (!view.id) throw new ServerError("open a document first");
  if (!question) throw new ServerError("type a question first");
  $("ask").disabled = true;
  say("Asking…");
  let reply;
  try {
    reply = await api("POST", "/v1/chat/completions", {
      model: "default", memory: view.id, messages: [{ role: "user", content: question }],
    });
  } finally {
    $("ask").disabled = false;
    say("");
  }
  const box = el("div", undefined, "answer");
  box.append(el("p", "Q: " + question));
  const text = reply.choices[0].message.content;
  const answer = el("p");
  if (!reply.quote) answer.append(el("span", text, "abstained"));
  else answer.append(el("strong", text));
  box.append(answer);
  if (reply.quote) {
    const p = el("p", "Quote: ");
    p.append(citeLink(reply.quote.text, reply.quote), where(reply.quote));
    box.append(p);
  }
  const evidence = (reply.citations || []).filter((c) => !reply.quote || c.start !== reply.quote.start || c.end !== reply.quote.end);
  if (evidence.length) {
    box.append(el("p", "Also read:", "note"));
    const list = el("ul");
    for (const cite of evidence) {
      const li = el("li");
      li.append(citeLink(cite.text, cite), where(cite));
      list.append(li);
    }
    box.append(list);
  }
  $("answers").prepend(box);
  document.body.dataset.answered = String(Number(document.body.dataset.answered || 0) + 1);
}

// ---- start ------------------------------------------------------------------------------------------------
async function useKey() {
  sessionStorage.setItem(KEY_ITEM, $("key").value);
  $("key").value = "";
  await refreshMemories();
  $("key-form").hidden = true;
  say("Connected.");
}

function start() {
  $("open-form").addEventListener("submit", guarded(readDocument));
  $("ask-form").addEventListener("submit", guarded(askQuestion));
  $("key-form").addEventListener("submit", guarded(useKey));
  guarded(async () => {
    try { await refreshMemories(); }
    finally { document.body.dataset.started = "1"; }
  })();
}

start();
