// The one place the pages talk to the server (docs/CONTRACT.md, /api/v1): requests, job
// polling, and the sentences shown when something goes wrong. Both pages import from here so
// they word errors and models the same way.

const API = "/api/v1";
const FINISHED = new Set(["succeeded", "failed", "canceled"]);
const OFFLINE =
  "Can't reach the server. Check your connection, or try again in a moment.";

// Polling starts quick so short jobs feel instant, slows down while nothing changes so a long
// or stuck job doesn't hammer the server, and never goes faster than the server's Retry-After.
const POLL_FIRST_MS = 500;
const POLL_MAX_MS = 5000;
const POLL_GROWTH = 1.6;
// A job can outlive a short network blip; give up only after this many failed polls in a row.
const POLL_RETRIES = 5;

export class ApiError extends Error {
  constructor(message, status = 0, retryAfterMs = 0) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }

  // Worth retrying: no answer at all, too many requests for now (429), or the server (or a
  // proxy in front of it) failed.
  get transient() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

// The server's Retry-After (seconds) in milliseconds; 0 when it sent none.
function retryAfterMs(headers) {
  const seconds = Number(headers.get("Retry-After"));
  return seconds > 0 ? seconds * 1000 : 0;
}

function statusMessage(status) {
  if (status === 404) return "Not found: it may have been deleted.";
  if (status === 413) return "That upload is too large for the server.";
  if (status === 429) return "The server is busy. Try again in a moment.";
  if (status >= 502 && status <= 504) {
    return "The service is unavailable right now. Try again in a moment.";
  }
  if (status >= 500) return `The server had a problem (HTTP ${status}). Try again in a moment.`;
  return `The server refused the request (HTTP ${status}).`;
}

// Errors are {"detail": "<sentence>"}; FastAPI's own validation errors put a list there, and a
// proxy's error page isn't JSON at all, so fall back to a sentence about the status code.
function errorMessage(body, status) {
  const detail = body?.detail;
  if (typeof detail === "string" && detail) return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail.map((problem) => problem.msg ?? String(problem)).join("; ");
  }
  return statusMessage(status);
}

// When the server requires API keys (it answers 401), the page asks for one once and keeps it
// in this browser's localStorage; every later call sends it as a Bearer token.
const API_KEY = "hwr.apiKey";

function authorization() {
  const key = localStorage.getItem(API_KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// True when the user gave a new key to retry with.
function askForKey() {
  const key = prompt("This server needs an API key. Enter yours:")?.trim();
  if (!key) return false;
  localStorage.setItem(API_KEY, key);
  return true;
}

async function request(path, options = {}, { askedForKey = false } = {}) {
  let response;
  try {
    const headers = { ...options.headers, ...authorization() };
    response = await fetch(`${API}${path}`, { ...options, headers });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(OFFLINE);
  }
  if (response.status === 401 && !askedForKey && askForKey()) {
    return request(path, options, { askedForKey: true });
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    const wait = retryAfterMs(response.headers);
    throw new ApiError(errorMessage(body, response.status), response.status, wait);
  }
  return response;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export function isFinished(job) {
  return FINISHED.has(job.status);
}

export async function getJob(id, { offset = 0, limit = 100, signal } = {}) {
  const query = new URLSearchParams({ offset, limit });
  const response = await request(`/jobs/${encodeURIComponent(id)}?${query}`, { signal });
  return { job: await response.json(), retryAfterMs: retryAfterMs(response.headers) };
}

async function getJobRetrying(id, options) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await getJob(id, options);
    } catch (error) {
      if (!(error instanceof ApiError && error.transient) || attempt >= POLL_RETRIES) throw error;
      const backoff = POLL_FIRST_MS * POLL_GROWTH ** attempt;
      await sleep(Math.max(backoff, error.retryAfterMs), options.signal);
    }
  }
}

// Polls until the job ends and returns it (with its first `limit` results); `onUpdate(job)` sees
// every intermediate state, for progress bars.
export async function waitForJob(id, { onUpdate, limit = 100, signal } = {}) {
  let delay = POLL_FIRST_MS;
  let lastProgress = null;
  for (;;) {
    const { job, retryAfterMs } = await getJobRetrying(id, { limit, signal });
    onUpdate?.(job);
    if (isFinished(job)) return job;
    const progress = JSON.stringify(job.progress);
    delay = progress === lastProgress ? Math.min(delay * POLL_GROWTH, POLL_MAX_MS) : POLL_FIRST_MS;
    lastProgress = progress;
    await sleep(Math.max(delay, retryAfterMs), signal);
  }
}

// Recognises one image. The server answers within a couple of seconds when it can (200);
// otherwise it hands back the queued job (202) and we follow that job to its end.
export async function predict(file, model, { signal } = {}) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("model", model);
  const response = await request("/predict", { method: "POST", body: form, signal });
  const body = await response.json();
  let item = body.result;
  if (response.status === 202) {
    const job = await waitForJob(body.id, { limit: 1, signal });
    item = job.results.items[0];
    if (!item) throw new ApiError(`The job ${job.status === "canceled" ? "was canceled" : "failed"}.`);
  }
  if (item.status === "failed") throw new ApiError(item.error ?? "The image couldn't be read.");
  return item;
}

// Idempotency keys must survive insecure origins (a LAN address over http), where
// crypto.randomUUID is missing but getRandomValues isn't.
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

// Starts a batch job. XMLHttpRequest rather than fetch because only it reports upload progress
// (`onUploadProgress(fraction)`). Reusing `idempotencyKey` on a retry can't create a second job.
export async function submitJob(files, model, options = {}) {
  try {
    return await sendJob(files, model, options);
  } catch (error) {
    if (error.status === 401 && askForKey()) return sendJob(files, model, options);
    throw error;
  }
}

function sendJob(files, model, { idempotencyKey, onUploadProgress, signal } = {}) {
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  form.append("model", model);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${API}/jobs`);
    xhr.responseType = "json";
    if (idempotencyKey) xhr.setRequestHeader("Idempotency-Key", idempotencyKey);
    for (const [name, value] of Object.entries(authorization())) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onUploadProgress?.(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
      else reject(new ApiError(errorMessage(xhr.response, xhr.status), xhr.status));
    });
    xhr.addEventListener("error", () => reject(new ApiError(OFFLINE)));
    xhr.addEventListener("abort", () => reject(signal.reason));
    signal?.addEventListener("abort", () => xhr.abort(), { once: true });
    xhr.send(form);
  });
}

// Cancel, never delete: a job that finished meanwhile answers 409 and keeps its results.
export async function cancelJob(id) {
  await request(`/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" });
}

export function resultsCsvUrl(id) {
  return `${API}/jobs/${encodeURIComponent(id)}/results.csv`;
}

// A plain link can't send the API key, so with a key the CSV is fetched and saved from a blob.
export async function downloadWithKey(event, id) {
  if (!localStorage.getItem(API_KEY)) return;
  event.preventDefault();
  const response = await request(`/jobs/${encodeURIComponent(id)}/results.csv`);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = `job-${id}.csv`;
  link.click();
  URL.revokeObjectURL(link.href);
}

export function jobPageUrl(id) {
  return new URL(`/jobs/${encodeURIComponent(id)}`, location.origin).href;
}

// A message for anything a page's own code caught: our sentences pass through, the rest
// (a bug, a browser quirk) gets a generic one rather than a stack trace.
export function describeError(error) {
  return error instanceof ApiError ? error.message : "Something went wrong. Please try again.";
}

export function formatPercent(probability) {
  return `${Math.round(probability * 100)}%`;
}

// The model_input PNG is shown as an <img>; only accept what the contract says it is.
export function isModelInput(value) {
  return typeof value === "string" && value.startsWith("data:image/png;base64,");
}

const MODEL_KEY = "emnist.model";

// Both pages have the same model <select> with the shipped models as static options, so it
// works before (and without) the server answering. The server's list then adds the models it
// serves beyond those, marks shipped ones that aren't installed, and picks its default unless
// the user chose before: the choice is remembered across pages. Rejects with an ApiError when
// the server can't be reached, so the page can say so straight away.
export async function setUpModelSelect(select) {
  const hasOption = (name) => select.querySelector(`option[value="${CSS.escape(name)}"]`);
  const remembered = localStorage.getItem(MODEL_KEY);
  if (remembered && hasOption(remembered)) select.value = remembered;
  select.addEventListener("change", () => localStorage.setItem(MODEL_KEY, select.value));

  const models = await (await request("/models")).json();
  for (const model of models.filter((served) => !hasOption(served.name))) {
    select.add(new Option(`${model.name} (${model.num_classes} classes)`, model.name));
  }
  const available = new Set(models.map((model) => model.name));
  for (const option of select.options) {
    option.disabled = !available.has(option.value);
    if (option.disabled) option.textContent += " (not installed)";
  }
  // Read again: the user may have chosen while the list was loading.
  const chosen = localStorage.getItem(MODEL_KEY);
  const preferred = available.has(chosen) ? chosen : models.find((m) => m.default)?.name;
  const firstAvailable = [...select.options].find((option) => !option.disabled);
  select.value = preferred ?? firstAvailable?.value ?? select.value;
}

// Each page has one notice area (role="alert") for problems that aren't about a single result.
export function showNotice(element, message) {
  element.textContent = message;
  element.hidden = !message;
}
