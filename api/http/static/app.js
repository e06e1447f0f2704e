// The kinsight search page: plain JS over the HTTP API, nothing loaded from elsewhere.
// Item fields are always put in the page as text (textContent), never as markup.

const KEY_STORAGE = "kinsight.apiKey";
const SNIPPET_CHARS = 240;
const TEXT_FIELDS = ["text", "caption", "description", "body", "summary"];
const TITLE_FIELDS = ["title", "name"];
const OPERATORS = [
  ["eq", "="], ["ne", "≠"], ["lt", "<"], ["le", "≤"], ["gt", ">"], ["ge", "≥"],
  ["in", "is one of (a, b, …)"], ["not_in", "is none of (a, b, …)"], ["contains", "contains"],
  ["is_null", "is empty"], ["not_null", "is set"],
];
const NO_VALUE = new Set(["is_null", "not_null"]);
const NUMERIC = /^(U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|FLOAT|REAL|DOUBLE|DECIMAL.*)$/;  // DuckDB types

const $ = (id) => document.getElementById(id);
// lastQuery repeats with new filters; lastSpace is where "more like this" looks (the space of the
// results on show: the image space after a search by picture).
// searches counts the searches sent, so that an answer overtaken by a later search is dropped.
const state = {collection: null, lastQuery: null, lastSpace: null, filterCount: 0, searches: 0};

// -- talking to the API ---------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, body) {
    super(describeError(status, body));
    this.status = status;
  }
}

function describeError(status, body) {
  if (!body || typeof body !== "object" || !("error" in body)) return `HTTP ${status}`;
  const detail = Array.isArray(body.detail)
    ? body.detail.map((e) => (e.loc ? `${e.loc.filter((p) => p !== "body").join(".")}: ` : "") + e.msg)
        .join("; ")
    : String(body.detail);
  return `${body.error}: ${detail}`;
}

// Paths are relative, so the page also works when the API is served under a prefix.
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers.set("X-API-Key", key);
  let response;
  try {
    response = await fetch(path, {...options, headers});
  } catch (e) {
    throw new ApiError(0, {error: "NetworkError", detail: "cannot reach the server; is it running?"});
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function postJson(path, payload) {
  return api(path, {method: "POST", headers: {"Content-Type": "application/json"},
                    body: JSON.stringify(payload)});
}

const collectionPath = (name) => `collections/${encodeURIComponent(name)}`;

// -- messages -------------------------------------------------------------------------------------
function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function showWarnings(warnings) {
  const list = $("warnings");
  list.replaceChildren(...warnings.map((w) => el("li", {}, `Warning: ${w}`)));
  list.hidden = warnings.length === 0;
}

// Runs an action, showing its failure in the page; a 401 asks for the API key first.
async function guarded(action) {
  showError("");
  try {
    return await action();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      askForKey(sessionStorage.getItem(KEY_STORAGE) ? "That API key was refused; try again." : null);
    }
    showError(e.message);
    $("status").textContent = "";
    return undefined;
  }
}

function askForKey(message) {
  $("key-message").textContent = message || "This server needs an API key.";
  $("key-form").hidden = false;
  $("api-key").focus();
}

// -- collections and spaces -----------------------------------------------------------------------
async function loadCollections() {
  const {collections} = await api("collections");
  const select = $("collection");
  const previous = select.value;
  select.replaceChildren(...collections.map((c) => el("option", {value: c.name}, c.name)));
  if (collections.length === 0) {
    $("status").textContent = "This store has no collections yet: add items first (see the API docs).";
    return;
  }
  if (collections.some((c) => c.name === previous)) select.value = previous;
  await chooseCollection(select.value);
}

async function chooseCollection(name) {
  const info = await api(collectionPath(name));
  state.collection = info;
  state.lastQuery = state.lastSpace = null;
  $("apply-filters").disabled = true;
  $("collection-count").textContent = `${info.count} items`;
  const spaces = $("space");
  spaces.replaceChildren(...info.spaces.map((s) => el(
    "option", {value: s.name}, `${s.name} (${s.modality}, ${s.encoder})`)));
  spaces.value = defaultSpace(info.spaces)?.name ?? "";
  $("space-row").hidden = info.spaces.length < 2;
  $("filter-rows").replaceChildren();
  $("image").value = "";
  $("results").replaceChildren();
  showWarnings([]);
  $("status").textContent = "";
  spaceChanged();
}

// Text queries go to a text space by default: 'text' when there is one, as the API does.
function defaultSpace(spaces) {
  return spaces.find((s) => s.name === "text") || spaces.find((s) => s.modality === "text") || spaces[0];
}

const selectedSpace = () => state.collection?.spaces.find((s) => s.name === $("space").value);

// The space a picture is searched in: the selected one if it holds pictures, else the only image space.
function imageSpace() {
  const selected = selectedSpace();
  if (selected?.modality === "image") return selected;
  const images = (state.collection?.spaces || []).filter((s) => s.modality === "image");
  return images.length === 1 ? images[0] : undefined;
}

function spaceChanged() {
  const textual = selectedSpace()?.modality === "text";
  $("mode").disabled = !textual;
  $("mode").title = textual ? "" : "Pictures are searched densely; the mode applies to text spaces.";
  const pictures = (state.collection?.spaces || []).some((s) => s.modality === "image");
  $("image").disabled = $("search-image").disabled = !pictures;
  $("picture-row").title = pictures ? "" : "This collection has no image space.";
}

// -- filters --------------------------------------------------------------------------------------
function filterableFields() {
  return Object.entries(state.collection?.fields || {}).filter(([, type]) => type !== "BLOB");
}

function addFilterRow() {
  const fields = filterableFields();
  if (fields.length === 0) {
    showError("This collection has no fields to filter on.");
    return;
  }
  const n = ++state.filterCount;
  const field = el("select", {id: `filter-field-${n}`, class: "filter-field"},
    ...fields.map(([name, type]) => el("option", {value: name}, `${name} (${type.toLowerCase()})`)));
  const op = el("select", {id: `filter-op-${n}`, class: "filter-op"},
    ...OPERATORS.map(([value, label]) => el("option", {value}, label)));
  const value = el("input", {id: `filter-value-${n}`, class: "filter-value", type: "text"});
  const remove = el("button", {type: "button", class: "remove", "aria-label": `Remove filter ${n}`}, "×");
  const row = el("div", {class: "filter-row"},
    el("label", {for: field.id, class: "visually-hidden"}, `Filter ${n} field`), field,
    el("label", {for: op.id, class: "visually-hidden"}, `Filter ${n} operator`), op,
    el("label", {for: value.id, class: "visually-hidden"}, `Filter ${n} value`), value, remove);
  op.addEventListener("change", () => { value.disabled = NO_VALUE.has(op.value); });
  remove.addEventListener("click", () => { row.remove(); $("add-filter").focus(); });
  $("filter-rows").append(row);
  field.focus();
}

// The rows as one structured filter: a condition, or {"and": [...]} of several; null for none.
function currentFilter() {
  const conditions = [...document.querySelectorAll(".filter-row")].map((row) => {
    const field = row.querySelector(".filter-field").value;
    const op = row.querySelector(".filter-op").value;
    if (NO_VALUE.has(op)) return {field, op};
    const raw = row.querySelector(".filter-value").value.trim();
    if (raw === "") throw new Error(`The filter on '${field}' needs a value.`);
    const type = state.collection.fields[field].replace(/\[\]$/, "");
    const parse = (text) => typedValue(text, type, field);
    const value = op === "in" || op === "not_in"
      ? raw.split(",").map((s) => s.trim()).filter((s) => s !== "").map(parse) : parse(raw);
    return {field, op, value};
  });
  if (conditions.length === 0) return null;
  return conditions.length === 1 ? conditions[0] : {and: conditions};
}

function typedValue(text, type, field) {
  if (NUMERIC.test(type)) {
    const number = Number(text);
    if (Number.isNaN(number)) throw new Error(`The filter on '${field}' needs a number, not '${text}'.`);
    return number;
  }
  if (type === "BOOLEAN") {
    if (!/^(true|false)$/i.test(text)) throw new Error(`The filter on '${field}' needs true or false.`);
    return text.toLowerCase() === "true";
  }
  return text;
}

// -- searching ------------------------------------------------------------------------------------
// The request of one search: a picture upload, or a JSON query by text or item id.
async function sendSearch(query, k, filter, path) {
  if (query.kind === "image") {
    const form = new FormData();
    form.append("image", query.file);
    form.append("k", String(k));
    const space = imageSpace();
    if (space) form.append("space", space.name);
    if (filter) form.append("filter", JSON.stringify(filter));
    return {response: await api(`${path}/search/image`, {method: "POST", body: form}), space};
  }
  const space = query.kind === "id" ? state.lastSpace : selectedSpace();
  const body = {[query.kind]: query.value, k, space: space?.name, filter};
  if (space?.modality === "text") body.mode = $("mode").value;
  return {response: await postJson(`${path}/search`, body), space};
}

async function runSearch(query) {
  if (!state.collection) throw new Error("Choose a collection first.");
  const k = Number($("k").value) || 10;
  const filter = currentFilter();
  const path = collectionPath(state.collection.name);
  $("status").textContent = "Searching…";
  const ticket = ++state.searches;
  let response, space;
  try {
    ({response, space} = await sendSearch(query, k, filter, path));
  } catch (e) {
    if (ticket === state.searches) {  // an earlier search's results must not pass for this one's
      $("results").replaceChildren();
      showWarnings([]);
    }
    throw e;
  }
  if (ticket !== state.searches) return;
  state.lastSpace = space;
  state.lastQuery = query;
  $("apply-filters").disabled = false;
  showWarnings(response.warnings || []);
  showHits(response.hits);
  const what = query.kind === "text" ? `“${query.value}”`
    : query.kind === "id" ? `items like ${query.value}` : `pictures like ${query.file.name}`;
  const where = state.lastSpace && state.collection.spaces.length > 1
    ? ` in space ${state.lastSpace.name}` : "";
  $("status").textContent = `${response.hits.length} results for ${what}${where}`
    + ` in ${Math.round(response.took_ms)} ms` + (filter ? " (filtered)" : "");
}

function queryFromForm(by) {
  if (by === "again") {
    if (!state.lastQuery) throw new Error("Search first; then filters can be applied to that search.");
    return state.lastQuery;
  }
  if (by === "image") {
    const file = $("image").files[0];
    if (!file) throw new Error("Choose a picture file first.");
    return {kind: "image", file};
  }
  const text = $("query").value.trim();
  if (!text) throw new Error("Type something to search for.");
  return {kind: "text", value: text};
}

// -- results --------------------------------------------------------------------------------------
function showHits(hits) {
  $("results").replaceChildren(...hits.map(hitCard));
}

function hitCard(hit) {
  const fields = hit.fields || {};
  const titleField = TITLE_FIELDS.find((f) => fields[f]);
  const textField = snippetField(fields);
  const title = titleField ? String(fields[titleField]) : hit.id;
  const shown = new Set([titleField, textField, ...pictureFields()]);
  const others = Object.entries(fields).filter(([name, value]) => !shown.has(name) && value !== null
                                                                  && value !== "");
  const more = el("button", {type: "button", class: "more"}, "More like this");
  more.setAttribute("aria-label", `More like ${title}`);
  more.addEventListener("click", () => guarded(() => runSearch({kind: "id", value: hit.id})));
  return el("li", {class: "hit", "data-id": hit.id},
    thumbnail(fields, title),
    el("div", {class: "hit-body"},
      el("h3", {}, title),
      textField ? el("p", {class: "snippet"}, snippet(String(fields[textField]), hit.chunk)) : "",
      others.length ? el("dl", {class: "fields"}, ...others.flatMap(([name, value]) => [
        el("dt", {}, name), el("dd", {}, compact(value))])) : "",
      el("p", {class: "meta"}, `${hit.id} · score ${hit.score.toFixed(3)}`),
      more));
}

function pictureFields() {
  return Object.entries(state.collection?.fields || {}).filter(([, t]) => t === "BLOB").map(([n]) => n);
}

// The text shown under the title: what the selected text space was built from, else a usual field.
function snippetField(fields) {
  const space = selectedSpace();
  const candidates = [...(space?.modality === "text" ? space.source_fields : []), ...TEXT_FIELDS];
  return candidates.find((f) => typeof fields[f] === "string" && fields[f] !== "");
}

// The matched chunk of a long text (offsets come with the hit), else its start.
function snippet(text, chunk) {
  let shown = text;
  if (chunk && chunk.index > 0 && chunk.start !== null && chunk.end !== null) {
    shown = "…" + text.slice(chunk.start, chunk.end);
  }
  shown = shown.split(/\s+/).join(" ").trim();
  return shown.length <= SNIPPET_CHARS ? shown : shown.slice(0, SNIPPET_CHARS - 1) + "…";
}

function compact(value) {
  const text = Array.isArray(value) ? value.join(", ")
    : typeof value === "object" ? JSON.stringify(value) : String(value);
  return text.length <= 80 ? text : text.slice(0, 79) + "…";
}

// Thumbnails come base64-encoded (WebP from kinsight's ingest); the first bytes say the format.
const SIGNATURES = [["UklGR", "image/webp"], ["iVBOR", "image/png"], ["/9j/", "image/jpeg"],
                    ["R0lGOD", "image/gif"]];

function thumbnail(fields, title) {
  const data = pictureFields().map((name) => fields[name]).find((v) => typeof v === "string" && v);
  if (!data) return el("div", {class: "thumb placeholder", "aria-hidden": "true"}, "¶");
  const mime = (SIGNATURES.find(([prefix]) => data.startsWith(prefix)) || [null, "image/webp"])[1];
  return el("img", {class: "thumb", alt: `picture of ${title}`, src: `data:${mime};base64,${data}`});
}

// -- small DOM helper -----------------------------------------------------------------------------
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children.filter((c) => c !== ""));
  return node;
}

// -- wiring ---------------------------------------------------------------------------------------
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORAGE, $("api-key").value);
  $("api-key").value = "";
  $("key-form").hidden = true;
  guarded(loadCollections);
});
$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const by = event.submitter?.value || "text";
  guarded(() => runSearch(queryFromForm(by)));
});
$("collection").addEventListener("change", () => guarded(() => chooseCollection($("collection").value)));
$("space").addEventListener("change", spaceChanged);
$("add-filter").addEventListener("click", addFilterRow);
guarded(loadCollections);
