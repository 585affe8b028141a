"""Int8 post-training quantization per target, with calibration data and a fidelity report.

Entry point: :func:`edgevit_deploy.quantize.pipeline.quantize_and_report`. One quantizer module per target
(named by the target table): :mod:`.onnx`, :mod:`.tflite`, :mod:`.coreml`, each exposing
``quantize(model, example, out_path, options, metadata, calib) -> QuantResult``. See docs/quantization.md.
"""
