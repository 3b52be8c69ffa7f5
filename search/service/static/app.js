// The search page: plain JavaScript over the JSON API (/api/search, /api/videos/...), no build step.
// The address bar always holds the state: the search in the query string, the moment being
// watched in the hash (#v=VIDEO_ID&t=START&e=END), so a copied link reopens that exact moment.
"use strict";

const $ = (id) => document.getElementById(id);
const FILTERS = ["folder", "since", "until", "date_field", "min_duration", "max_duration", "group", "limit"];
const MINUTE_FIELDS = ["min_duration", "max_duration"]; // minutes on the page, seconds in the API
let offset = 0;
let current = null; // {video_id, start, end, duration}
let lines = []; // the playing video's transcript: [{start, end, li}] by start time
// what each channel's evidence is called on the page: the picture, what is said, text on screen
const LABELS = { frames: "seen", speech: "said", text: "shown" };
const LABEL_TITLES = { frames: "the picture matches", speech: "said: captions or speech recognition",
  text: "shown: text on screen" };

function fmt(sec) { // same as groundzero.data.spans.format_timestamp: hh:mm:ss.s
  const tenths = Math.round(sec * 10);
  const h = Math.floor(tenths / 36000), m = Math.floor((tenths % 36000) / 600), s = tenths % 600;
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(h)}:${pad(m)}:${pad(Math.floor(s / 10))}.${s % 10}`;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    let msg = body && body.detail ? body.detail : `${r.status} ${r.statusText}`;
    if (Array.isArray(msg)) msg = msg.map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ");
    throw new Error(r.status === 401 ? "This server needs an access token: open the page as /?token=YOUR_TOKEN" : msg);
  }
  return body;
}

// -- the search ------------------------------------------------------------------------------

function formParams() {
  const p = new URLSearchParams();
  p.set("q", $("q").value.trim());
  for (const f of FILTERS) {
    let v = $(f).value;
    if (v === "" || (f === "group" && v === "none") || (f === "date_field" && v === "modified")) continue;
    if (MINUTE_FIELDS.includes(f)) v = String(Number(v) * 60);
    p.set(f, v);
  }
  if (offset) p.set("offset", String(offset));
  return p;
}

function fillForm(p) {
  $("q").value = p.get("q") || "";
  for (const f of FILTERS) {
    if (!p.has(f)) continue;
    $(f).value = MINUTE_FIELDS.includes(f) ? String(Number(p.get(f)) / 60) : p.get(f);
  }
  offset = Number(p.get("offset") || 0);
}

async function runSearch(push) {
  const p = formParams();
  if (!p.get("q")) return;
  if (push) history.pushState(null, "", `/?${p}${location.hash}`);
  $("status").textContent = "Searching…";
  $("status").classList.remove("error");
  try {
    showResults(await api(`/api/search?${p}`));
  } catch (e) {
    $("results").replaceChildren();
    $("pager").hidden = true;
    $("notfound").hidden = true;
    $("status").textContent = e.message;
    $("status").classList.add("error");
  }
}

function showResults(res) {
  const ms = Object.values(res.timings_ms).reduce((a, b) => a + b, 0);
  const what = res.group === "video" ? "videos" : "moments";
  $("status").textContent = res.total
    ? `${res.total} ${what} for “${res.query}” (index version ${res.index_version}, ${ms.toFixed(0)} ms)`
    : `Nothing in the archive matches these filters for “${res.query}”.`;
  $("notfound").hidden = res.found || res.total === 0;
  const list = $("results");
  list.replaceChildren();
  if (res.groups) {
    for (const g of res.groups) {
      const v = res.videos[g.video_id];
      const inner = el("ol", { class: "hits" }, ...g.hits.map((h) => hitItem(h, v)));
      list.append(el("li", { class: "group" }, el("h2", {}, v.rel_path), inner));
    }
  } else {
    for (const h of res.hits) list.append(hitItem(h, res.videos[h.video_id]));
  }
  const last = Math.min(res.offset + res.limit, res.total);
  $("pager").hidden = res.total <= res.limit && res.offset === 0;
  $("range").textContent = res.total ? `${res.offset + 1}–${last} of ${res.total}` : "";
  $("prev").disabled = res.offset === 0;
  $("next").disabled = last >= res.total;
  markActive();
}

function label(channel) {
  return el("span", { class: `label ${channel}`, title: LABEL_TITLES[channel] || channel }, LABELS[channel] || channel);
}

function spaced(...parts) { // the parts that are not empty, with a space between (read aloud and copied apart)
  return parts.filter((p) => p !== "" && p != null).flatMap((p, i) => (i ? [" ", p] : [p]));
}

// The snippet as text nodes, with <mark> around the matched words. `marks` are [start, end) offsets in
// Unicode code points (Python's str indices), not UTF-16 units: hence Array.from. Never parsed as HTML.
function marked(snippet, marks) {
  const chars = Array.from(snippet);
  const out = [];
  let at = 0;
  for (const [a, b] of [...(marks || [])].sort((x, y) => x[0] - y[0])) {
    const s = Math.max(a, at), e = Math.min(b, chars.length);
    if (!(e > s)) continue; // overlapping, reversed or past the end: skipped
    if (s > at) out.push(document.createTextNode(chars.slice(at, s).join("")));
    out.push(el("mark", {}, chars.slice(s, e).join("")));
    at = e;
  }
  if (at < chars.length) out.push(document.createTextNode(chars.slice(at).join("")));
  return out;
}

function evidenceLines(h) { // what was said or shown, as found (the frames' evidence is the thumbnail)
  return (h.evidence || []).filter((e) => e.channel !== "frames").slice(0, 3).map((e) =>
    el("div", { class: "evidence" }, ...spaced(label(e.channel),
      e.speaker ? el("span", { class: "speaker" }, `${e.speaker}:`) : "",
      el("q", { class: "snippet" }, ...(e.snippet ? marked(e.snippet, e.marks) : [e.text])))));
}

function hitItem(h, v) {
  const img = el("img", { loading: "lazy", alt: "", src: `${v.thumbnail_url}?t=${h.start_sec}&w=320` });
  const sure = h.found_prob >= 0.5 ? "" : " weak";
  const text = el("div", {},
    el("div", { class: "name" }, v.name),
    el("div", { class: "meta" }, `${h.start} – ${h.end}`, v.folder ? ` · ${v.folder}` : ""),
    el("div", { class: "meta" + sure }, `score ${h.score.toFixed(3)} · match probability ${h.found_prob.toFixed(2)}`),
    el("div", { class: "channels", "aria-label": "found in" }, ...spaced(...(h.channels || []).map(label))),
    ...evidenceLines(h));
  const li = el("li", { class: "hit", tabindex: "0", "data-video": h.video_id, "data-start": h.start_sec,
    "data-end": h.end_sec }, img, text);
  const open = () => openMoment(h.video_id, h.start_sec, h.end_sec, v);
  li.addEventListener("click", open);
  li.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
  return li;
}

function markActive() {
  for (const li of document.querySelectorAll(".hit")) {
    li.classList.toggle("active", !!current && li.dataset.video === current.video_id &&
      Number(li.dataset.start) === current.start);
  }
}

// -- the player ------------------------------------------------------------------------------

function openMoment(videoId, start, end, video) {
  current = { video_id: videoId, start, end, duration: video.duration_sec };
  history.replaceState(null, "", `${location.pathname}${location.search}#${momentHash()}`);
  $("player").hidden = false;
  $("link").hidden = true;
  $("now-name").textContent = video.rel_path;
  $("now-span").textContent = `${fmt(start)} – ${fmt(end)}`;
  $("download").href = `${video.clip_url}?start=${start}&end=${end}`; // the span as a file (/api/clip)
  const v = $("video");
  v.dataset.start = String(start);
  const seek = () => { v.currentTime = start; v.play().catch(() => { /* autoplay refused: the user presses play */ }); };
  const src = `${video.stream_url}`;
  if (v.getAttribute("src") !== src) {
    v.addEventListener("loadedmetadata", seek, { once: true });
    v.setAttribute("src", src);
    setCaptions(video);
    loadTranscript(video);
  } else if (v.readyState >= 1) {
    seek();
  } else {
    v.addEventListener("loadedmetadata", seek, { once: true });
  }
  drawTimeline();
  markActive();
  $("player").scrollIntoView({ block: "nearest" });
}

function momentHash() {
  return `v=${encodeURIComponent(current.video_id)}&t=${current.start}&e=${current.end}`;
}

function drawTimeline() {
  const v = $("video");
  const total = (isFinite(v.duration) && v.duration > 0) ? v.duration : (current ? current.duration : 0);
  if (!current || !total) return;
  $("span").style.left = `${(100 * current.start) / total}%`;
  $("span").style.width = `${Math.max(0.3, (100 * (current.end - current.start)) / total)}%`;
  $("playhead").style.left = `${(100 * (v.currentTime || 0)) / total}%`;
}

// -- captions and the transcript of the playing video ----------------------------------------

function setCaptions(video) { // a new <track> per video: browsers do not reliably reload a changed src
  const v = $("video");
  for (const t of v.querySelectorAll("track")) t.remove();
  if (!video.captions_url) return;
  const track = el("track", { kind: "captions", label: "Captions", src: video.captions_url, default: "" });
  v.append(track);
  track.track.mode = "showing";
}

async function loadTranscript(video) {
  const list = $("transcript");
  list.replaceChildren();
  lines = [];
  $("transcript-panel").hidden = false;
  $("transcript-note").textContent = "loading…";
  let segments;
  try {
    segments = await api(video.transcript_url);
  } catch (e) {
    if (current && current.video_id === video.video_id) $("transcript-note").textContent = e.message;
    return;
  }
  if (!current || current.video_id !== video.video_id) return; // another video was opened meanwhile
  $("transcript-note").textContent = segments.length ? ""
    : `nothing said or shown as text was indexed${video.text_note ? ` (${video.text_note})` : ""}`;
  for (const s of segments) {
    const li = el("li", { class: `line ${s.channel}`, tabindex: "0", "data-start": s.start_sec, "data-end": s.end_sec,
      title: s.source }, ...spaced(el("span", { class: "time" }, fmt(s.start_sec)), label(s.channel),
      s.speaker ? el("span", { class: "speaker" }, `${s.speaker}:`) : "", el("span", { class: "said" }, s.text)));
    const seek = () => { $("video").currentTime = s.start_sec; followTranscript(); };
    li.addEventListener("click", seek);
    li.addEventListener("keydown", (e) => { if (e.key === "Enter") seek(); });
    list.append(li);
    lines.push({ start: s.start_sec, end: s.end_sec, li });
  }
  followTranscript();
}

function followTranscript() { // highlight the lines being said or shown now; keep the first in view
  const t = $("video").currentTime || 0;
  let first = null;
  for (const line of lines) {
    // a line of zero length (a caption flash) counts as current for its instant's first 0.25 s
    const now = line.start <= t && (t < line.end || t < line.start + 0.25);
    if (now && !line.li.classList.contains("current") && !first) first = line.li;
    line.li.classList.toggle("current", now);
  }
  if (first) { // scrolls the list only, never the page
    const box = $("transcript"), top = first.offsetTop;
    if (top < box.scrollTop || top + first.offsetHeight > box.scrollTop + box.clientHeight) {
      box.scrollTop = Math.max(0, top - box.clientHeight / 3);
    }
  }
}

async function openFromHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  const id = h.get("v");
  if (!id) return;
  const start = Number(h.get("t") || 0);
  try {
    const video = await api(`/api/videos/${encodeURIComponent(id)}`);
    const end = Number(h.get("e") || Math.min(start + 10, video.duration_sec));
    openMoment(video.video_id, start, end, video);
  } catch (e) {
    $("status").textContent = `The linked video cannot be opened: ${e.message}`;
    $("status").classList.add("error");
  }
}

async function copyLink() {
  const url = `${location.origin}/?${formParams()}#${momentHash()}`;
  try {
    await navigator.clipboard.writeText(url);
    $("copy").textContent = "Link copied";
    setTimeout(() => { $("copy").textContent = "Copy link"; }, 1500);
  } catch (_) { // no clipboard (plain http to another host): show it to copy by hand
    $("link").value = url;
    $("link").hidden = false;
    $("link").select();
  }
}

async function loadFolders() {
  try {
    const folders = await api("/api/folders");
    const sel = $("folder");
    const keep = sel.value;
    for (const f of folders) sel.append(el("option", { value: f.folder }, `${f.folder} (${f.videos})`));
    sel.value = keep;
  } catch (_) { /* the search reports the error */ }
}

// -- wiring ----------------------------------------------------------------------------------

$("search").addEventListener("submit", (e) => { e.preventDefault(); offset = 0; runSearch(true); });
for (const f of FILTERS) $(f).addEventListener("change", () => { offset = 0; if ($("q").value.trim()) runSearch(true); });
$("prev").addEventListener("click", () => { offset = Math.max(0, offset - Number($("limit").value)); runSearch(true); });
$("next").addEventListener("click", () => { offset += Number($("limit").value); runSearch(true); });
$("copy").addEventListener("click", copyLink);
$("replay").addEventListener("click", () => { if (current) { $("video").currentTime = current.start; $("video").play().catch(() => {}); } });
$("video").addEventListener("timeupdate", () => { drawTimeline(); followTranscript(); });
$("video").addEventListener("seeked", followTranscript);
$("video").addEventListener("loadedmetadata", drawTimeline);
$("timeline").addEventListener("click", (e) => {
  const v = $("video"), r = e.currentTarget.getBoundingClientRect();
  if (isFinite(v.duration)) v.currentTime = ((e.clientX - r.left) / r.width) * v.duration;
});
window.addEventListener("popstate", () => { fillForm(new URLSearchParams(location.search)); runSearch(false); });

(async function start() {
  const p = new URLSearchParams(location.search);
  if (p.has("token")) { // the server has set its cookie; keep the token out of the address bar and links
    p.delete("token");
    history.replaceState(null, "", `${location.pathname}${p.toString() ? "?" + p : ""}${location.hash}`);
  }
  await loadFolders();
  fillForm(p);
  if ($("q").value) await runSearch(false);
  await openFromHash();
})();
