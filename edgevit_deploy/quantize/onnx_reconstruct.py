"""onnxruntime's static quantizer on a reconstructed model (``--calib-method reconstruct``).

The weights arrive on the grid :mod:`.reconstruct` learned for onnxruntime: symmetric per-channel int8 in
``[-64, 64]`` (``reduce_range``, safe on AVX2 CPUs without VNNI; see :data:`.onnx.REDUCE_RANGE`). Whatever the
activation dtype, the weights are then quantized as symmetric int8 with ``reduce_range``, so that
onnxruntime's own scale (``max|w| / 64`` per channel) is the learned one and its rounding gives back the
learned integers. Activations: min/max calibration, of the type ``activation_dtype`` asks for.
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

    @property
    def reduce_range(self) -> bool:
        return True


def static_quantizer(float_path, calib, settings, work) -> StaticQuantizer:
    """The static quantizer for ``settings``: :class:`ReconstructedStaticQuantizer` for ``reconstruct``."""
    cls = ReconstructedStaticQuantizer if settings.calib_method == "reconstruct" else StaticQuantizer
    return cls(float_path, calib, settings, work)
