"""The tensor names and shapes of the public Wav2Lip generator checkpoints, as data.

Transcribed from the public architecture, NOT from lipsync.wav2lip_model, so a renamed attribute
or a wrong channel count in our module fails the test instead of silently agreeing with itself:

- Rudrabha/Wav2Lip @ db7bc44a861f560479bbbe1f4782bd2467120c64, models/wav2lip.py (class Wav2Lip:
  the layer list below, block by block) and models/conv.py (Conv2d and Conv2dTranspose each hold
  `conv_block = Sequential(conv, BatchNorm2d)` and an `act` ReLU without parameters); the same
  file in brunotech/Wav2Lip @ f115e4c is identical in every layer.
- The checkpoints store `{"state_dict": ..., "optimizer": ..., "global_step": ..., "global_epoch":
  ...}` (wav2lip_train.py save_checkpoint) and the loader strips "module." from every key
  (inference.py load_model), i.e. some files were saved from a DataParallel wrapper.
- Every BatchNorm also has `num_batches_tracked` (shape ()) in checkpoints written by torch >= 0.4.1;
  the repository pins torch==1.1.0 (requirements.txt at the same commit), and a state dict saved by
  that training code lists `...conv_block.1.num_batches_tracked` for every batch norm (the error
  output in Rudrabha/Wav2Lip issue #247). Loaders must accept it present or absent.
- Size check: 36,298,035 parameters x 4 bytes x 3 (weights + Adam's two moments) = 435.6 MB =
  415.4 MiB: the "416 MB" the maintainers give for wav2lip.pth (issue #141) and the 436 MB of the
  mirrored file (avatar/engines/registry.py).
"""

from __future__ import annotations

# Layer kinds: "conv" = Conv2d + BatchNorm2d (conv.py Conv2d), "convT" = ConvTranspose2d + BatchNorm2d
# (conv.py Conv2dTranspose), "plain" = a bare nn.Conv2d (no batch norm).
# Each entry: (module path, kind, in channels, out channels, kernel size).
_FACE_ENCODER = [
    # block 0: 96x96
    [("conv", 6, 16, 7)],
    # block 1: 48x48
    [("conv", 16, 32, 3), ("conv", 32, 32, 3), ("conv", 32, 32, 3)],
    # block 2: 24x24
    [("conv", 32, 64, 3), ("conv", 64, 64, 3), ("conv", 64, 64, 3), ("conv", 64, 64, 3)],
    # block 3: 12x12
    [("conv", 64, 128, 3), ("conv", 128, 128, 3), ("conv", 128, 128, 3)],
    # block 4: 6x6
    [("conv", 128, 256, 3), ("conv", 256, 256, 3), ("conv", 256, 256, 3)],
    # block 5: 3x3
    [("conv", 256, 512, 3), ("conv", 512, 512, 3)],
    # block 6: 1x1
    [("conv", 512, 512, 3), ("conv", 512, 512, 1)],
]
_AUDIO_ENCODER = [  # one flat Sequential
    ("conv", 1, 32, 3),
    ("conv", 32, 32, 3),
    ("conv", 32, 32, 3),
    ("conv", 32, 64, 3),
    ("conv", 64, 64, 3),
    ("conv", 64, 64, 3),
    ("conv", 64, 128, 3),
    ("conv", 128, 128, 3),
    ("conv", 128, 128, 3),
    ("conv", 128, 256, 3),
    ("conv", 256, 256, 3),
    ("conv", 256, 512, 3),
    ("conv", 512, 512, 1),
]
_FACE_DECODER = [
    [("conv", 512, 512, 1)],
    [("convT", 1024, 512, 3), ("conv", 512, 512, 3)],
    [("convT", 1024, 512, 3), ("conv", 512, 512, 3), ("conv", 512, 512, 3)],
    [("convT", 768, 384, 3), ("conv", 384, 384, 3), ("conv", 384, 384, 3)],
    [("convT", 512, 256, 3), ("conv", 256, 256, 3), ("conv", 256, 256, 3)],
    [("convT", 320, 128, 3), ("conv", 128, 128, 3), ("conv", 128, 128, 3)],
    [("convT", 160, 64, 3), ("conv", 64, 64, 3), ("conv", 64, 64, 3)],
]
_OUTPUT_BLOCK = [("conv", 80, 32, 3), ("plain", 32, 3, 1)]  # index 2 is the Sigmoid (no tensors)

# 8,171,056 (face encoder) + 2,812,672 (audio encoder) + 25,291,072 (decoder) + 23,235 (output)
EXPECTED_PARAMETER_COUNT = 36_298_035


def _layer_tensors(
    prefix: str, kind: str, cin: int, cout: int, kernel: int, with_batch_count: bool
) -> list[tuple[str, tuple[int, ...]]]:
    if kind == "plain":
        return [(f"{prefix}.weight", (cout, cin, kernel, kernel)), (f"{prefix}.bias", (cout,))]
    # torch stores a transposed conv's weight as (in, out, k, k) and a conv's as (out, in, k, k).
    weight_shape = (cin, cout, kernel, kernel) if kind == "convT" else (cout, cin, kernel, kernel)
    tensors = [
        (f"{prefix}.conv_block.0.weight", weight_shape),
        (f"{prefix}.conv_block.0.bias", (cout,)),
        (f"{prefix}.conv_block.1.weight", (cout,)),
        (f"{prefix}.conv_block.1.bias", (cout,)),
        (f"{prefix}.conv_block.1.running_mean", (cout,)),
        (f"{prefix}.conv_block.1.running_var", (cout,)),
    ]
    if with_batch_count:
        tensors.append((f"{prefix}.conv_block.1.num_batches_tracked", ()))
    return tensors


def reference_tensors(with_batch_count: bool = True) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) for every tensor of the generator, in the modules' registration order."""
    out: list[tuple[str, tuple[int, ...]]] = []
    for i, block in enumerate(_FACE_ENCODER):
        for j, layer in enumerate(block):
            out += _layer_tensors(f"face_encoder_blocks.{i}.{j}", *layer, with_batch_count)
    for j, layer in enumerate(_AUDIO_ENCODER):
        out += _layer_tensors(f"audio_encoder.{j}", *layer, with_batch_count)
    for i, block in enumerate(_FACE_DECODER):
        for j, layer in enumerate(block):
            out += _layer_tensors(f"face_decoder_blocks.{i}.{j}", *layer, with_batch_count)
    for j, layer in enumerate(_OUTPUT_BLOCK):
        out += _layer_tensors(f"output_block.{j}", *layer, with_batch_count)
    return out


def reference_parameter_count() -> int:
    """Learnable values only: conv weights/biases and batch-norm weights/biases."""
    total = 0
    for name, shape in reference_tensors(with_batch_count=False):
        if name.endswith(("running_mean", "running_var")):
            continue
        size = 1
        for dim in shape:
            size *= dim
        total += size
    return total
