"""zoo's own loggers say what register, convert and load did, at INFO, under ``zoo.*`` names."""

import logging

import zoo


def test_register_convert_and_load_are_logged_at_info(registry, tiny_model_dir, caplog):
    from zoo.conversion.pipeline import convert

    caplog.set_level(logging.INFO, logger="zoo")
    registry.register("tiny", str(tiny_model_dir))
    convert(registry, "tiny", ["onnx-fp32"])
    zoo.load("tiny", registry=registry, cache=False, artifact="onnx-fp32")
    lines = {(r.name, r.levelno): r.getMessage() for r in caplog.records if r.name.startswith("zoo.")}
    assert lines[("zoo.registry", logging.INFO)].startswith(f"registered tiny from {tiny_model_dir} at sha256:")
    assert lines[("zoo.convert", logging.INFO)].startswith("convert tiny -> onnx-fp32: ready in ")
    assert "mean cosine 1.00000" in lines[("zoo.convert", logging.INFO)]
    assert lines[("zoo.load", logging.INFO)].startswith("loaded tiny: onnx-fp32 (onnxruntime) on cpu, by explicit")
