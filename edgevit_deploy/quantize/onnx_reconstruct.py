"""onnxruntime's static quantizer on a reconstructed model (``--calib-method reconstruct``).

The weights arrive on the grid :mod:`.reconstruct` learned for onnxruntime's form: symmetric per-channel int8
in ``[-127, 127]`` for the default U8S8, ``[-64, 64]`` for S8S8 (``--activation-dtype int8``: ``reduce_range``;
see :data:`.onnx.REDUCE_RANGE`). The weights are quantized as symmetric int8 with the same range rule as the
plain quantizer, so that onnxruntime's own scale (``max|w| / qmax`` per channel) is the learned one and its
rounding gives back the learned integers. Activations: min/max calibration, of the type ``activation_dtype``
asks for.
"""

from __future__ import annotations

from .onnx import StaticQuantizer


class ReconstructedStaticQuantizer(StaticQuantizer):
    @property
    def method(self):
        return self.q.CalibrationMethod.MinMax

    @property
    def weight_type(self):
        return self.q.QuantType.QInt8


def static_quantizer(float_path, calib, settings, work) -> StaticQuantizer:
    """The static quantizer for ``settings``: :class:`ReconstructedStaticQuantizer` for ``reconstruct``."""
    cls = ReconstructedStaticQuantizer if settings.calib_method == "reconstruct" else StaticQuantizer
    return cls(float_path, calib, settings, work)
