"""Apply a trained or tuned model to your own scans (`mrisr-ray predict`; docs/predict.md).

    from mrisr_ray.predict import ModelChoice, PredictRequest, predict
    result = predict(PredictRequest(input=Path("scan.nii.gz"), output=Path("scan_sr.nii.gz"),
                                    model=ModelChoice(checkpoint=Path("best_generator.pt"))))

Modules, one concept each: `models` (which generators: a file, a run, a study's fold
ensemble), `scan` (reading a NIfTI into the network's orientation and writing the result back
into the file's), `grid` (zero-filling a low-resolution scan onto the training grid; the k-space
check of an input), `apply` (`Predictor`: one scan through the model), `run` (files, folders,
outputs, the summary).
"""

from mrisr_ray.predict.apply import Options, Prediction, Predictor, Scores
from mrisr_ray.predict.models import Model
from mrisr_ray.predict.run import ModelChoice, PredictRequest, PredictResult, Row, load_model, predict
from mrisr_ray.predict.scan import Scan, read_scan, to_file_orientation, write_atomically

__all__ = ["Model", "ModelChoice", "Options", "PredictRequest", "PredictResult", "Prediction", "Predictor",
           "Row", "Scan", "Scores", "load_model", "predict", "read_scan", "to_file_orientation",
           "write_atomically"]
