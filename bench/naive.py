"""The naive design the service is measured against: one request, one forward pass, no queue.

What the seed demos do: preprocess and predict inside the request handler. Run it with
`uvicorn --factory bench.naive:create_app`; it reads the same `HWR_*` settings as the service
(models folder, default model, torch threads), so both sides run the same model the same way.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, File, HTTPException, UploadFile

from jobs.settings import get_settings
from ml import Predictor, load_model
from ml.image_errors import PreprocessError
from ml.preprocess import read_model_input


def create_app() -> FastAPI:
    settings = get_settings()
    predictor = Predictor(
        load_model(settings.models_dir / settings.default_model),
        device="cpu",
        threads=settings.torch_threads,
    )
    app = FastAPI(title="Naive synchronous recognizer")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(file: Annotated[UploadFile, File()]) -> dict:
        """Top-5 for one image, computed in this request's worker thread."""
        try:
            model_input = read_model_input(file.file.read(), predictor.spec.input)
        except PreprocessError as error:
            raise HTTPException(422, error.message) from error
        top5 = predictor.predict_inputs([model_input])[0]
        return {"top5": [{"label": label, "probability": p} for label, p in top5]}

    return app
