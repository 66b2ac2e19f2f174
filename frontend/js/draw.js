// The draw page: a pointer-events drawing pad whose picture is sent to /api/v1/predict.
import {
  describeError,
  formatPercent,
  isModelInput,
  predict,
  setUpModelSelect,
  showNotice,
} from "./api.js";

const AUTO_PREDICT_KEY = "emnist.autoPredict";
// Long enough to lift the pen between the strokes of one character (the bar of a 7, the
// second line of an X) without a prediction of the half-drawn shape.
const AUTO_PREDICT_DELAY_MS = 800;
// The pen button that marks a stylus's eraser end, in the pointer events spec.
const PEN_ERASER_BUTTON = 5;

const canvas = document.querySelector("#pad");
const context = canvas.getContext("2d");
// A character drawn across most of the pad, scaled to EMNIST's 28x28, then has strokes about
// as thick as the training images'. Dark ink on white: the server detects the polarity.
const INK = { colour: "#111", width: canvas.width / 14 };
const ERASER = { colour: "#fff", width: canvas.width / 7 };

const elements = {
  notice: document.querySelector("#notice"),
  drawTool: document.querySelector("#tool-draw"),
  eraseTool: document.querySelector("#tool-erase"),
  undo: document.querySelector("#undo"),
  clear: document.querySelector("#clear"),
  predict: document.querySelector("#predict"),
  model: document.querySelector("#model"),
  autoPredict: document.querySelector("#auto-predict"),
  imageFile: document.querySelector("#image-file"),
  result: document.querySelector(".result"),
  empty: document.querySelector("#answer-empty"),
  busy: document.querySelector("#answer-busy"),
  error: document.querySelector("#answer-error"),
  value: document.querySelector("#answer-value"),
  char: document.querySelector("#answer-char"),
  confidence: document.querySelector("#answer-confidence"),
  details: document.querySelector("#details"),
  modelInput: document.querySelector("#model-input"),
  top5: document.querySelector("#top5"),
  barTemplate: document.querySelector("#bar-template"),
};

// Strokes are kept as points rather than pixels so Undo can repaint everything but the last.
const strokes = [];
let activeStroke = null;
let activePointerId = null;
let tool = "draw";
let autoPredictTimer = 0;
let pendingPrediction = null;
// What the shown answer is about ("drawing" or a chosen File), to ask again for another model.
let lastInput = null;

function paintPaper() {
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
}

function penFor(stroke) {
  const pen = stroke.tool === "erase" ? ERASER : INK;
  context.strokeStyle = context.fillStyle = pen.colour;
  context.lineWidth = pen.width;
  context.lineCap = context.lineJoin = "round";
  return pen;
}

// Every stroke starts with a dot, so a tap leaves a mark (the point of an "i").
function paintDot(stroke, point) {
  const pen = penFor(stroke);
  context.beginPath();
  context.arc(point.x, point.y, pen.width / 2, 0, 2 * Math.PI);
  context.fill();
}

function paintSegment(stroke, from, to) {
  penFor(stroke);
  context.beginPath();
  context.moveTo(from.x, from.y);
  context.lineTo(to.x, to.y);
  context.stroke();
}

// Replays a stroke exactly as it was painted live (a dot, then each segment), so the picture
// after Undo is pixel for pixel the one the user saw.
function paintStroke(stroke) {
  const [first, ...rest] = stroke.points;
  paintDot(stroke, first);
  rest.reduce((from, to) => {
    paintSegment(stroke, from, to);
    return to;
  }, first);
}

function repaint() {
  paintPaper();
  strokes.forEach(paintStroke);
}

// The pad is drawn at a fixed resolution but shown at whatever size the layout gives it.
function canvasPoint(event) {
  const box = canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * canvas.width) / box.width,
    y: ((event.clientY - box.top) * canvas.height) / box.height,
  };
}

function hasInk() {
  return strokes.some((stroke) => stroke.tool === "draw");
}

function drawingChanged() {
  elements.undo.disabled = elements.clear.disabled = strokes.length === 0;
  // A shown answer no longer describes the pad; dim it until the next prediction.
  elements.result.classList.toggle("is-stale", !elements.value.hidden);
}

function startStroke(event) {
  const isEraserEnd = event.button === PEN_ERASER_BUTTON;
  if (activeStroke || !event.isPrimary || (event.button !== 0 && !isEraserEnd)) return;
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  cancelAutoPredict();
  abortPrediction();
  activePointerId = event.pointerId;
  activeStroke = { tool: isEraserEnd ? "erase" : tool, points: [canvasPoint(event)] };
  strokes.push(activeStroke);
  paintStroke(activeStroke);
  drawingChanged();
}

function extendStroke(event) {
  if (event.pointerId !== activePointerId) return;
  // Coalesced events carry the points a fast pen passed between two animation frames.
  const coalesced = event.getCoalescedEvents?.() ?? [];
  for (const sample of coalesced.length ? coalesced : [event]) {
    const point = canvasPoint(sample);
    paintSegment(activeStroke, activeStroke.points.at(-1), point);
    activeStroke.points.push(point);
  }
}

function endStroke(event) {
  if (event.pointerId !== activePointerId) return;
  activeStroke = null;
  activePointerId = null;
  scheduleAutoPredict();
}

function scheduleAutoPredict() {
  cancelAutoPredict();
  if (elements.autoPredict.checked && hasInk()) {
    autoPredictTimer = setTimeout(predictDrawing, AUTO_PREDICT_DELAY_MS);
  }
}

function cancelAutoPredict() {
  clearTimeout(autoPredictTimer);
}

// The drawing changed under a running prediction, so its answer will be about an old picture.
function abortPrediction() {
  if (!pendingPrediction) return;
  pendingPrediction.abort();
  pendingPrediction = null;
  resetResult();
}

function undo() {
  if (activeStroke || strokes.length === 0) return;
  abortPrediction();
  strokes.pop();
  repaint();
  drawingChanged();
  if (hasInk()) scheduleAutoPredict();
  else resetResult();
}

function clearPad() {
  cancelAutoPredict();
  abortPrediction();
  strokes.length = 0;
  lastInput = null;
  repaint();
  resetResult();
  drawingChanged();
}

function selectTool(name) {
  tool = name;
  elements.drawTool.setAttribute("aria-pressed", String(name === "draw"));
  elements.eraseTool.setAttribute("aria-pressed", String(name === "erase"));
  canvas.classList.toggle("is-erasing", name === "erase");
}

// Exactly one of the answer's states is visible at a time.
function showAnswerState(state) {
  for (const name of ["empty", "busy", "error", "value"]) elements[name].hidden = name !== state;
  elements.result.setAttribute("aria-busy", String(state === "busy"));
  elements.result.classList.remove("is-stale");
  if (state !== "value") elements.details.hidden = true;
}

function resetResult() {
  showAnswerState("empty");
}

function showError(message) {
  elements.error.textContent = message;
  showAnswerState("error");
}

function renderTop5(top5) {
  const rows = top5.map(({ label, probability }) => {
    const row = elements.barTemplate.content.firstElementChild.cloneNode(true);
    row.querySelector(".bar-label").textContent = label;
    row.querySelector(".bar-fill").style.setProperty("--value", probability);
    row.querySelector(".bar-value").textContent = formatPercent(probability);
    return row;
  });
  elements.top5.replaceChildren(...rows);
}

function showResult(item) {
  elements.char.textContent = item.prediction;
  elements.confidence.textContent = `${formatPercent(item.confidence)} confident`;
  renderTop5(item.top5 ?? []);
  const hasImage = isModelInput(item.model_input);
  elements.modelInput.hidden = !hasImage;
  if (hasImage) elements.modelInput.src = item.model_input;
  showAnswerState("value");
  elements.details.hidden = false;
}

// Runs one prediction; a newer one (or Clear, or a new stroke) aborts it, so an answer about
// an older drawing can never replace the current one.
async function recognise(input, filePromise) {
  cancelAutoPredict();
  pendingPrediction?.abort();
  lastInput = input;
  const controller = new AbortController();
  pendingPrediction = controller;
  showAnswerState("busy");
  try {
    const item = await predict(await filePromise, elements.model.value, {
      signal: controller.signal,
    });
    // Clear, Undo or a newer prediction may have aborted this one while its answer was arriving.
    if (controller.signal.aborted) return;
    showNotice(elements.notice, "");
    showResult(item);
  } catch (error) {
    if (error.name !== "AbortError") showError(describeError(error));
  } finally {
    if (pendingPrediction === controller) pendingPrediction = null;
  }
}

function drawingAsFile() {
  return new Promise((resolve) => {
    canvas.toBlob((blob) => resolve(new File([blob], "drawing.png", { type: "image/png" })));
  });
}

function predictDrawing() {
  if (!hasInk()) {
    showError("Draw a character first.");
    return;
  }
  recognise("drawing", drawingAsFile());
}

function predictChosenFile() {
  const [file] = elements.imageFile.files;
  if (!file) return;
  recognise(file, Promise.resolve(file));
  // Let the same file be chosen again, e.g. after switching models.
  elements.imageFile.value = "";
}

// A different model gives a different answer for the same picture.
function askAgainWithNewModel() {
  if (lastInput instanceof File) recognise(lastInput, Promise.resolve(lastInput));
  else if (lastInput === "drawing" && hasInk()) predictDrawing();
}

function onKeyDown(event) {
  const isUndo = (event.ctrlKey || event.metaKey) && !event.shiftKey && event.key === "z";
  if (!isUndo) return;
  event.preventDefault();
  undo();
}

function setUpAutoPredictSetting() {
  elements.autoPredict.checked = localStorage.getItem(AUTO_PREDICT_KEY) !== "false";
  elements.autoPredict.addEventListener("change", () => {
    localStorage.setItem(AUTO_PREDICT_KEY, String(elements.autoPredict.checked));
    if (!elements.autoPredict.checked) cancelAutoPredict();
  });
}

function start() {
  repaint();
  canvas.addEventListener("pointerdown", startStroke);
  canvas.addEventListener("pointermove", extendStroke);
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  // Capture can be taken away (e.g. by a system gesture) without a pointerup.
  canvas.addEventListener("lostpointercapture", endStroke);
  elements.drawTool.addEventListener("click", () => selectTool("draw"));
  elements.eraseTool.addEventListener("click", () => selectTool("erase"));
  elements.undo.addEventListener("click", undo);
  elements.clear.addEventListener("click", clearPad);
  elements.predict.addEventListener("click", predictDrawing);
  elements.imageFile.addEventListener("change", predictChosenFile);
  elements.model.addEventListener("change", askAgainWithNewModel);
  document.addEventListener("keydown", onKeyDown);
  setUpAutoPredictSetting();
  setUpModelSelect(elements.model).catch((error) => {
    showNotice(elements.notice, describeError(error));
  });
}

start();
