"""Read a saved ``.mlpackage``: the MIL program (through coremltools' own milproto loader, weights from
the package's weight file) and the interface Core ML puts around it (image inputs, classifier output,
user metadata)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._lazy import require
from .errors import MilProgramError

log = logging.getLogger(__name__)


@dataclass
class MilPackage:
    path: Path
    spec: Any  # Model_pb2.Model
    function: Any  # coremltools.converters.mil.mil.Function
    input_names: list[str]
    output_names: list[str]
    image_inputs: dict[str, str] = field(default_factory=dict)  # input name -> colour layout (RGB / BGR / ...)
    scores_output: str | None = None  # classifier: the output holding the per-class scores
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def is_classifier(self) -> bool:
        return self.scores_output is not None


def load_spec_and_weights(path: Path) -> tuple[Any, str | None]:
    ct = require("coremltools", "coreml")
    path = Path(path)
    if not path.exists():
        raise MilProgramError(f"{path} does not exist; pass the .mlpackage directory the Core ML export wrote.")
    try:
        model = ct.models.MLModel(str(path), skip_model_load=True)
    except Exception as exc:  # coremltools raises plain Exceptions for unreadable packages
        raise MilProgramError(f"{path} is not a readable Core ML model: {exc}") from exc
    return model.get_spec(), model.weights_dir


def load_program(spec: Any, weights_dir: str | None) -> Any:
    """The pymil Program of an ML Program spec (the same loader coremltools uses to read models back)."""
    from coremltools.converters.mil.frontend.milproto.load import load

    return load(spec, specification_version=spec.specificationVersion, file_weights_dir=weights_dir)


def load_package(path: Path | str) -> MilPackage:
    path = Path(path)
    spec, weights_dir = load_spec_and_weights(path)
    kind = spec.WhichOneof("Type")
    if kind != "mlProgram":
        raise MilProgramError(
            f"{path} holds a Core ML {kind!r} model; the reference executor runs ML Programs only "
            "(convert with convert_to='mlprogram')."
        )
    program = load_program(spec, weights_dir)
    desc = spec.description
    fname = getattr(desc, "defaultFunctionName", "") or "main"
    if fname not in program.functions:
        raise MilProgramError(f"{path}: the program has no function {fname!r} (has: {', '.join(program.functions)})")
    image_inputs = {}
    for inp in desc.input:
        if inp.type.WhichOneof("Type") == "imageType":
            image_inputs[inp.name] = inp.type.imageType.ColorSpace.Name(inp.type.imageType.colorSpace)
    scores = desc.predictedProbabilitiesName or None
    return MilPackage(
        path=path,
        spec=spec,
        function=program.functions[fname],
        input_names=[i.name for i in desc.input],
        output_names=[o.name for o in desc.output],
        image_inputs=image_inputs,
        scores_output=scores,
        metadata=dict(desc.metadata.userDefined),
    )
