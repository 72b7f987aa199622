#!/usr/bin/env python3
"""Write fixtures/models/waveform_stft_metadata.tflite: waveform_stft.tflite with TFLite Metadata
(the `TFLITE_METADATA` buffer) whose input declares AudioProperties (16000 Hz, 1 channel), so
humpback can read the sample rate from the file instead of assuming it.

Needs tflite-support, whose pins (numpy<2, protobuf<4) clash with the other fixture scripts, so
use a virtualenv of its own (from the repository root):
    python3 -m venv .venv-tflite-support
    .venv-tflite-support/bin/pip install tflite-support==0.4.4 "numpy<2"
    .venv-tflite-support/bin/python scripts/gen-tflite-metadata-fixture.py
"""

import os

import flatbuffers
from tflite_support import metadata
from tflite_support import metadata_schema_py_generated as schema

MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "models")


def tensor(name, description, content=None):
    meta = schema.TensorMetadataT()
    meta.name = name
    meta.description = description
    meta.content = content
    return meta


def main():
    with open(os.path.join(MODELS, "waveform_stft.tflite"), "rb") as handle:
        model_bytes = handle.read()
    audio = schema.AudioPropertiesT()
    audio.sampleRate = 16000
    audio.channels = 1
    content = schema.ContentT()
    content.contentPropertiesType = schema.ContentProperties.AudioProperties
    content.contentProperties = audio
    subgraph = schema.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [tensor("waveform", "1 s of mono audio at 16 kHz", content)]
    subgraph.outputTensorMetadata = [
        tensor("embedding", "64 values"),
        tensor("logits", "5 values"),
        tensor("spectrogram", "98 frames x 32 bands"),
    ]
    model_metadata = schema.ModelMetadataT()
    model_metadata.name = "waveform_stft with audio metadata"
    model_metadata.description = "humpback test fixture: the input declares its sample rate"
    model_metadata.version = "1"
    model_metadata.subgraphMetadata = [subgraph]
    builder = flatbuffers.Builder(0)
    builder.Finish(model_metadata.Pack(builder), metadata.MetadataPopulator.METADATA_FILE_IDENTIFIER)
    populator = metadata.MetadataPopulator.with_model_buffer(model_bytes)
    populator.load_metadata_buffer(builder.Output())
    populator.populate()
    with open(os.path.join(MODELS, "waveform_stft_metadata.tflite"), "wb") as handle:
        handle.write(populator.get_model_buffer())


if __name__ == "__main__":
    main()
