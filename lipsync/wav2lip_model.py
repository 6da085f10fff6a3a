"""The Wav2Lip generator (Prajwal et al. 2020) as a torch module that loads the public checkpoints.

Only the engine imports this file, so torch is imported at the top. Module and parameter names are
part of the checkpoint format: `face_encoder_blocks.<i>.<j>.conv_block.<0 conv | 1 batch norm>`,
`audio_encoder.<j>...`, `face_decoder_blocks.<i>.<j>...` and `output_block.<0 | 1>`; renaming an
attribute breaks loading of wav2lip.pth / wav2lip_gan.pth. tests/wav2lip_reference_keys.py holds
the expected names and shapes, written out independently of this class.

Inputs: a 1x80x16 mel window (0.2 s of audio around the frame) and a 6x96x96 face: the target crop
with its lower half blacked out, then a reference crop of the same person, both BGR in [0, 1].
Output: the 3x96x96 BGR face with a mouth that matches the audio.
"""

from __future__ import annotations

import torch
from torch import nn

FACE_SIZE_PX = 96
MEL_BANDS = 80
MEL_STEPS = 16


class ConvBnRelu(nn.Module):
    """Conv2d -> BatchNorm -> ReLU; `residual` adds the input before the ReLU (same shape in and out)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int | tuple[int, int] = 1,
        padding: int = 1,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel, stride, padding),
            nn.BatchNorm2d(out_channels),
        )
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_block(x)
        if self.residual:
            y = y + x
        return self.act(y)


class ConvTransposeBnRelu(nn.Module):
    """ConvTranspose2d -> BatchNorm -> ReLU: the decoder's 2x upsampling step."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        padding: int,
        output_padding: int = 0,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, kernel, stride, padding, output_padding),
            nn.BatchNorm2d(out_channels),
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


def _residuals(channels: int, count: int) -> list[nn.Module]:
    return [ConvBnRelu(channels, channels, 3, 1, 1, residual=True) for _ in range(count)]


def _down(in_channels: int, out_channels: int, residual_count: int) -> nn.Sequential:
    """Stride-2 3x3 conv that halves the map, then shape-preserving residual convs."""
    return nn.Sequential(
        ConvBnRelu(in_channels, out_channels, 3, 2, 1), *_residuals(out_channels, residual_count)
    )


def _up(in_channels: int, out_channels: int, residual_count: int) -> nn.Sequential:
    """Transposed conv that doubles the map, then shape-preserving residual convs."""
    return nn.Sequential(
        ConvTransposeBnRelu(in_channels, out_channels, 3, 2, 1, output_padding=1),
        *_residuals(out_channels, residual_count),
    )


class Wav2Lip(nn.Module):
    """U-Net: face encoder (96 -> 1 px), audio encoder (80x16 mel -> 512x1x1), decoder with skips."""

    def __init__(self) -> None:
        super().__init__()
        # Encoder outputs, kept for the skip connections: 16@96, 32@48, 64@24, 128@12, 256@6, 512@3, 512@1.
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvBnRelu(6, 16, 7, 1, 3)),
                _down(16, 32, 2),
                _down(32, 64, 3),
                _down(64, 128, 2),
                _down(128, 256, 2),
                _down(256, 512, 1),
                nn.Sequential(ConvBnRelu(512, 512, 3, 1, 0), ConvBnRelu(512, 512, 1, 1, 0)),
            ]
        )
        # 1x80x16 -> 32x80x16 -> 64x27x16 -> 128x9x6 -> 256x3x3 -> 512x1x1
        self.audio_encoder = nn.Sequential(
            ConvBnRelu(1, 32, 3, 1, 1),
            *_residuals(32, 2),
            ConvBnRelu(32, 64, 3, (3, 1), 1),
            *_residuals(64, 2),
            ConvBnRelu(64, 128, 3, 3, 1),
            *_residuals(128, 2),
            ConvBnRelu(128, 256, 3, (3, 2), 1),
            *_residuals(256, 1),
            ConvBnRelu(256, 512, 3, 1, 0),
            ConvBnRelu(512, 512, 1, 1, 0),
        )
        # Each block's input is the previous output concatenated with the matching encoder output,
        # hence in-channels = previous out + skip channels (512+512, 512+256, 384+128, 256+64, 128+32).
        self.face_decoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvBnRelu(512, 512, 1, 1, 0)),
                nn.Sequential(ConvTransposeBnRelu(1024, 512, 3, 1, 0), *_residuals(512, 1)),
                _up(1024, 512, 2),
                _up(768, 384, 2),
                _up(512, 256, 2),
                _up(320, 128, 2),
                _up(160, 64, 2),
            ]
        )
        self.output_block = nn.Sequential(
            ConvBnRelu(80, 32, 3, 1, 1),
            nn.Conv2d(32, 3, kernel_size=1, stride=1, padding=0),
            nn.Sigmoid(),
        )

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """mel (B, 1, 80, 16), faces (B, 6, 96, 96) -> (B, 3, 96, 96) in [0, 1]."""
        skips = []
        x = faces
        for block in self.face_encoder_blocks:
            x = block(x)
            skips.append(x)
        x = self.audio_encoder(mel)  # (B, 512, 1, 1)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), skips.pop()), dim=1)
        return self.output_block(x)  # (B, 3, 96, 96)


def parameter_count(model: nn.Module) -> int:
    """Learnable values (conv weights and biases, batch-norm scales and shifts); no running stats."""
    return sum(p.numel() for p in model.parameters())
