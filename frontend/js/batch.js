// The batch page: upload many images (or zips) as one job, follow its progress, show and share
// the results. Also serves /jobs/<id>, which reopens a job from its shareable link.
import {
  ApiError,
  cancelJob,
  describeError,
  downloadWithKey,
  formatPercent,
  getJob,
  isFinished,
  isModelInput,
  jobPageUrl,
  newIdempotencyKey,
  resultsCsvUrl,
  setUpModelSelect,
  showNotice,
  submitJob,
  waitForJob,
} from "./api.js";

const PAGE_SIZE = 100;
// Answers under this are highlighted for a human to check.
const LOW_CONFIDENCE = 0.6;
const NO_SUCH_JOB = "There is no job at this link: it may have expired or been deleted.";

const elements = {
  notice: document.querySelector("#notice"),
  model: document.querySelector("#model"),
  dropzone: document.querySelector("#dropzone"),
  files: document.querySelector("#files"),
  job: document.querySelector("#job"),
  uploadRow: document.querySelector("#upload-row"),
  uploadProgress: document.querySelector("#upload-progress"),
  uploadText: document.querySelector("#upload-text"),
  jobRow: document.querySelector("#job-row"),
  jobProgress: document.querySelector("#job-progress"),
  jobText: document.querySelector("#job-text"),
  jobStatus: document.querySelector("#job-status"),
  cancel: document.querySelector("#cancel"),
  retry: document.querySelector("#retry"),
  share: document.querySelector("#share"),
  shareUrl: document.querySelector("#share-url"),
  copyUrl: document.querySelector("#copy-url"),
  copyStatus: document.querySelector("#copy-status"),
  results: document.querySelector("#results"),
  summary: document.querySelector("#results-summary"),
  downloadCsv: document.querySelector("#download-csv"),
  grid: document.querySelector("#results-grid"),
  more: document.querySelector("#more"),
  cardTemplate: document.querySelector("#card-template"),
};

// An upload the server hasn't accepted yet, kept (with its idempotency key) for "Try again".
let pendingUpload = null;
let jobId = null;
let shownResults = 0;
// Object URLs of the uploaded files by name, to show each result beside its own picture.
let previews = new Map();
// The batch on screen owns this: starting another one aborts its upload and its polling.
let activeBatch = null;
let retryAction = null;

// Floors, unlike formatPercent: a bar must not read 100% while anything is left to do.
function progressPercent(fraction) {
  return `${Math.floor(fraction * 100)}%`;
}

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function jobIdFromUrl() {
  const match = location.pathname.match(/^\/jobs\/([^/]+)\/?$/);
  return match ? decodeURIComponent(match[1]) : null;
}

function fail(error, retry) {
  showNotice(elements.notice, describeError(error));
  // Retrying only helps when the server or the network was at fault, not the request.
  const canRetry = error instanceof ApiError && error.transient;
  retryAction = canRetry ? retry : null;
  elements.retry.hidden = !canRetry;
}

function clearFailure() {
  showNotice(elements.notice, "");
  elements.retry.hidden = true;
  retryAction = null;
}

// A name uploaded twice can't tell us which file a result belongs to, so it gets no preview.
function rememberPreviews(files) {
  const counts = new Map();
  for (const file of files) counts.set(file.name, (counts.get(file.name) ?? 0) + 1);
  previews = new Map(
    files
      .filter((file) => counts.get(file.name) === 1)
      .map((file) => [file.name, URL.createObjectURL(file)]),
  );
}

function forgetPreviews() {
  previews.forEach((url) => URL.revokeObjectURL(url));
  previews = new Map();
}

function takeOverPage() {
  activeBatch?.abort();
  activeBatch = new AbortController();
  return activeBatch.signal;
}

function resetPage() {
  activeBatch?.abort();
  forgetPreviews();
  clearFailure();
  jobId = null;
  elements.job.hidden = true;
  elements.share.hidden = true;
  elements.results.hidden = true;
  elements.jobRow.hidden = true;
  elements.cancel.hidden = true;
  elements.grid.replaceChildren();
}

function setUploadProgress(fraction) {
  elements.uploadProgress.value = fraction * 100;
  elements.uploadText.textContent = progressPercent(fraction);
  if (fraction >= 1) elements.jobStatus.textContent = "Uploaded. Waiting for the server…";
}

function statusSentence(job) {
  const { total, failed } = job.progress;
  switch (job.status) {
    case "queued":
      return "Waiting for a worker…";
    case "running":
      return "Recognising…";
    case "succeeded":
      return failed
        ? `Finished: ${total - failed} recognised, ${failed} could not be read.`
        : `Finished: all ${plural(total, "image")} recognised.`;
    case "canceled":
      return "The job was canceled.";
    default:
      return "The job failed.";
  }
}

function showProgress(job) {
  const { total, done } = job.progress;
  const fraction = total ? done / total : Number(isFinished(job));
  elements.jobRow.hidden = false;
  elements.jobProgress.value = fraction * 100;
  elements.jobText.textContent = `${done} of ${total} · ${progressPercent(fraction)}`;
  // The live status changes only with the job's state, so screen readers aren't flooded by counts.
  const sentence = statusSentence(job);
  if (elements.jobStatus.textContent !== sentence) elements.jobStatus.textContent = sentence;
  elements.cancel.hidden = isFinished(job);
}

function showJobLinks(id) {
  const url = jobPageUrl(id);
  elements.share.hidden = false;
  elements.shareUrl.value = url;
  elements.downloadCsv.href = resultsCsvUrl(id);
  if (location.href !== url) history.replaceState(null, "", url);
}

elements.downloadCsv.addEventListener("click", (event) => {
  downloadWithKey(event, jobId).catch((error) => {
    showNotice(elements.notice, describeError(error));
  });
});

function showNoPreview(card) {
  card.querySelector(".card-thumb img").hidden = true;
  card.querySelector(".card-no-image").hidden = false;
}

function setThumbnail(card, item) {
  const image = card.querySelector(".card-thumb img");
  const local = previews.get(item.filename);
  const source = local ?? (isModelInput(item.model_input) ? item.model_input : null);
  if (!source) {
    showNoPreview(card);
    return;
  }
  // A refused upload is often not a picture at all; say so rather than show a broken image.
  image.addEventListener("error", () => showNoPreview(card), { once: true });
  image.src = source;
  image.hidden = false;
  // The 28x28 model input is tiny; keep its pixels sharp rather than blurred when enlarged.
  image.classList.toggle("is-model-input", !local);
}

function flagFor(item) {
  if (item.status === "failed") return "Failed";
  if (item.status !== "succeeded") return "Not processed";
  return item.confidence < LOW_CONFIDENCE ? "Low confidence" : "";
}

function resultCard(item) {
  const card = elements.cardTemplate.content.firstElementChild.cloneNode(true);
  const succeeded = item.status === "succeeded";
  const flag = flagFor(item);
  card.classList.toggle("is-failed", item.status === "failed");
  card.classList.toggle("is-low", succeeded && Boolean(flag));
  setThumbnail(card, item);
  card.querySelector(".card-answer").hidden = !succeeded;
  if (succeeded) {
    card.querySelector(".card-char").textContent = item.prediction;
    card.querySelector(".card-confidence").textContent = formatPercent(item.confidence);
  }
  card.querySelector(".card-flag").textContent = flag;
  card.querySelector(".card-flag").hidden = !flag;
  card.querySelector(".card-error").textContent = item.error ?? "";
  card.querySelector(".card-error").hidden = !item.error;
  card.querySelector(".card-filename").textContent = item.filename;
  return card;
}

function appendResults(results) {
  elements.grid.append(...results.items.map(resultCard));
  shownResults += results.items.length;
  elements.more.hidden = shownResults >= results.total;
}

function summarise(job) {
  const { total, failed } = job.progress;
  const counts = `${plural(total, "image")}: ${total - failed} recognised, ${failed} failed.`;
  return `${counts} Answers below ${formatPercent(LOW_CONFIDENCE)} confidence are highlighted.`;
}

async function showResults(id, signal) {
  const { job } = await getJob(id, { offset: 0, limit: PAGE_SIZE, signal });
  elements.results.hidden = false;
  elements.summary.textContent = summarise(job);
  elements.grid.replaceChildren();
  shownResults = 0;
  appendResults(job.results);
}

async function showMoreResults() {
  elements.more.disabled = true;
  try {
    const { job } = await getJob(jobId, { offset: shownResults, limit: PAGE_SIZE });
    appendResults(job.results);
  } catch (error) {
    fail(error, showMoreResults);
  } finally {
    elements.more.disabled = false;
  }
}

// Polls the job to its end, then shows its results.
async function followJob(job, signal) {
  jobId = job.id;
  elements.job.hidden = false;
  showJobLinks(job.id);
  try {
    showProgress(job);
    const finished = isFinished(job)
      ? job
      : await waitForJob(job.id, { onUpdate: showProgress, limit: 1, signal });
    if (finished.status === "failed") {
      showNotice(elements.notice, "The job failed on the server. Any results it finished are below.");
    }
    await showResults(job.id, signal);
  } catch (error) {
    if (error.name !== "AbortError") fail(error, () => reopenJob(job.id));
  }
}

async function reopenJob(id) {
  const signal = takeOverPage();
  clearFailure();
  try {
    const { job } = await getJob(id, { limit: 1, signal });
    await followJob(job, signal);
  } catch (error) {
    if (error.name === "AbortError") return;
    // A malformed id (422) in a hand-edited link means the same to the user as a missing job.
    const notFound = error instanceof ApiError && [404, 422].includes(error.status);
    fail(notFound ? new ApiError(NO_SUCH_JOB, 404) : error, () => reopenJob(id));
  }
}

async function sendUpload() {
  const { files, model, idempotencyKey } = pendingUpload;
  const signal = takeOverPage();
  clearFailure();
  elements.job.hidden = false;
  elements.uploadRow.hidden = false;
  setUploadProgress(0);
  elements.jobStatus.textContent = `Uploading ${plural(files.length, "file")}…`;
  let job;
  try {
    job = await submitJob(files, model, {
      idempotencyKey,
      onUploadProgress: setUploadProgress,
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") return;
    fail(error, sendUpload);
    elements.jobStatus.textContent = "The upload did not go through.";
    return;
  }
  pendingUpload = null;
  setUploadProgress(1);
  rememberPreviews(files);
  await followJob(job, signal);
}

function startBatch(fileList) {
  const files = [...fileList];
  if (files.length === 0) return;
  resetPage();
  pendingUpload = { files, model: elements.model.value, idempotencyKey: newIdempotencyKey() };
  sendUpload();
}

async function cancel() {
  elements.cancel.disabled = true;
  try {
    await cancelJob(jobId);
  } catch (error) {
    // 409: the job finished first; polling shows its results.
    if (!(error instanceof ApiError && error.status === 409)) fail(error, cancel);
  } finally {
    elements.cancel.disabled = false;
  }
}

async function copyShareUrl() {
  try {
    await navigator.clipboard.writeText(elements.shareUrl.value);
    elements.copyStatus.textContent = "Copied.";
  } catch {
    // The clipboard API needs a secure origin and permission; let the user copy by hand.
    elements.shareUrl.select();
    elements.copyStatus.textContent = "Press Ctrl+C (or ⌘C) to copy.";
  }
}

function carriesFiles(event) {
  return event.dataTransfer?.types.includes("Files");
}

function setUpDropping() {
  const { dropzone } = elements;
  for (const type of ["dragenter", "dragover"]) {
    dropzone.addEventListener(type, (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      dropzone.classList.add("is-dragging");
    });
  }
  dropzone.addEventListener("dragleave", (event) => {
    if (!dropzone.contains(event.relatedTarget)) dropzone.classList.remove("is-dragging");
  });
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("is-dragging");
    startBatch(event.dataTransfer.files);
  });
  // A file dropped just beside the zone would otherwise make the browser leave the page.
  for (const type of ["dragover", "drop"]) {
    document.addEventListener(type, (event) => {
      if (carriesFiles(event)) event.preventDefault();
    });
  }
}

function start() {
  setUpDropping();
  elements.files.addEventListener("change", () => {
    startBatch(elements.files.files);
    elements.files.value = "";
  });
  elements.cancel.addEventListener("click", cancel);
  elements.retry.addEventListener("click", () => {
    elements.retry.hidden = true;
    retryAction?.();
  });
  elements.copyUrl.addEventListener("click", copyShareUrl);
  elements.more.addEventListener("click", showMoreResults);
  setUpModelSelect(elements.model).catch((error) => {
    showNotice(elements.notice, describeError(error));
  });
  const id = jobIdFromUrl();
  if (id) {
    // Opened from a shared link: nothing was uploaded from this page.
    elements.uploadRow.hidden = true;
    reopenJob(id);
  }
}

start();
