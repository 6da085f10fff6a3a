"""A tiny SenseVoiceSmall model folder, made on the spot, for testing the real funasr loading path.

The folder has the public checkpoint's layout and file formats (config.yaml in the published
format, configuration.json with its file_path_metas, a Kaldi-nnet am.mvn, a SentencePiece BPE
model, model.pt holding a state dict of funasr's own SenseVoiceSmall class), only with a 32-wide,
two-layer encoder and a ~100-piece tokenizer trained here. The frontend is the real one (80 mels,
LFR 7/6 -> 560 inputs), so real audio goes through the real feature path.

`ForcedOutput` rewires the random weights so the CTC head writes chosen tokens: every layer is
made a per-frame map (no attention, FSMN or feed-forward mixing), each query embedding row lights
one marker input that is carried to one encoder channel, audio frames light a constant channel,
and the CTC head reads token logits off those channels. SenseVoiceSmall.inference puts the
language query (embedding row lid_dict[language]), rows 1 and 2 (emotion, event) and the text
norm query (row 14 withitn / 15 woitn) in front of the audio frames, so the decoded string is
`<tag of the language row><tag of row 1><tag of row 2><tag of the itn row><speech piece>`.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

TOKENIZER_FILE = "chn_jpn_yue_eng_ko_spectok.bpe.model"  # the public checkpoint's name for it
N_MELS = 80
LFR_M = 7
FEATURE_DIM = N_MELS * LFR_M  # 560, as in the real model
# Encoder sizes: ours, and the public checkpoint's (its config.yaml). model.pt of the public one
# (Hugging Face FunAudioLLM/SenseVoiceSmall @ 3847d57b) is 936,291,369 bytes; the vocabulary has
# 25,055 pieces.
TINY_ENCODER = {"output_size": 32, "attention_heads": 2, "linear_units": 32, "num_blocks": 1, "tp_blocks": 1}
PUBLIC_ENCODER = {
    "output_size": 512,
    "attention_heads": 4,
    "linear_units": 2048,
    "num_blocks": 50,
    "tp_blocks": 20,
}
PUBLIC_MODEL_PT_BYTES = 936_291_369
PUBLIC_VOCAB_SIZE = 25_055
ENCODER_DIM = TINY_ENCODER["output_size"]

# Every tag SenseVoiceSmall's tokenizer has for language, emotion, event and text normalisation.
TAGS = (
    *(f"<|{code}|>" for code in ("zh", "en", "yue", "ja", "ko", "nospeech")),
    *(f"<|{name}|>" for name in ("HAPPY", "SAD", "ANGRY", "NEUTRAL", "FEARFUL", "DISGUSTED", "SURPRISED")),
    "<|EMO_UNKNOWN|>",
    *(
        f"<|{name}|>"
        for name in ("Speech", "BGM", "Applause", "Laughter", "Cry", "Sneeze", "Breath", "Cough", "Sing")
    ),
    "<|Speech_Noise|>",
    "<|Event_UNK|>",
    "<|GBG|>",
    "<|withitn|>",
    "<|woitn|>",
)

# Query embedding rows, from funasr's SenseVoiceSmall (lid_dict, textnorm_dict; rows 1 and 2 are
# the emotion and event queries).
LANGUAGE_ROWS = {"auto": 0, "zh": 3, "en": 4, "yue": 7, "ja": 11, "ko": 12, "nospeech": 13}
EMOTION_ROW = 1
EVENT_ROW = 2
ITN_ROWS = {True: 14, False: 15}

_CORPUS = (
    "Hello there, how are you today?",
    "Hello again. The weather is fine and the sun is out.",
    "We talk about speech, music, laughter and applause.",
    "A quick brown fox jumps over the lazy dog.",
    "Hello, hello! Say hello to the avatar.",
    "It was the first great sorrow of his life.",
)

_CONFIG_YAML = """\
encoder: SenseVoiceEncoderSmall
encoder_conf:
    output_size: {output_size}
    attention_heads: {attention_heads}
    linear_units: {linear_units}
    num_blocks: {num_blocks}
    tp_blocks: {tp_blocks}
    dropout_rate: 0.1
    positional_dropout_rate: 0.1
    attention_dropout_rate: 0.1
    input_layer: pe
    pos_enc_class: SinusoidalPositionEncoder
    normalize_before: true
    kernel_size: 11
    sanm_shfit: 0
    selfattention_layer_type: sanm

model: SenseVoiceSmall
model_conf:
    length_normalized_loss: true
    sos: 1
    eos: 2
    ignore_id: -1

tokenizer: SentencepiecesTokenizer
tokenizer_conf:
  bpemodel: null
  unk_symbol: <unk>
  split_with_space: true

frontend: WavFrontend
frontend_conf:
    fs: 16000
    window: hamming
    n_mels: {n_mels}
    frame_length: 25
    frame_shift: 10
    lfr_m: {lfr_m}
    lfr_n: 6
    cmvn_file: null

dataset: SenseVoiceCTCDataset
dataset_conf:
  index_ds: IndexDSJsonl
  batch_sampler: EspnetStyleBatchSampler
  batch_type: token
  batch_size: 14000
  sos: ${{model_conf.sos}}
  eos: ${{model_conf.eos}}
"""


def config_yaml(encoder: dict = TINY_ENCODER) -> str:
    """config.yaml in the public checkpoint's format with the given encoder sizes."""
    return _CONFIG_YAML.format(n_mels=N_MELS, lfr_m=LFR_M, **encoder)


CONFIGURATION_JSON = {
    "framework": "pytorch",
    "task": "auto-speech-recognition",
    "model": {"type": "funasr"},
    "pipeline": {"type": "funasr-pipeline"},
    "model_name_in_hub": {"ms": "", "hf": ""},
    "file_path_metas": {
        "init_param": "model.pt",
        "config": "config.yaml",
        "tokenizer_conf": {"bpemodel": TOKENIZER_FILE},
        "frontend_conf": {"cmvn_file": "am.mvn"},
    },
}


@dataclass(frozen=True)
class ForcedOutput:
    """What the CTC head writes: `row_tags[embedding row]` at each query position, then
    `speech_piece` for every audio frame (collapsed to one token by CTC)."""

    row_tags: dict[int, str] = field(
        default_factory=lambda: {
            LANGUAGE_ROWS["auto"]: "<|en|>",
            LANGUAGE_ROWS["en"]: "<|en|>",
            LANGUAGE_ROWS["zh"]: "<|zh|>",
            EMOTION_ROW: "<|HAPPY|>",
            EVENT_ROW: "<|Laughter|>",
            ITN_ROWS[True]: "<|withitn|>",
            ITN_ROWS[False]: "<|woitn|>",
        }
    )
    speech_piece: str = "▁Hello"


def build_tiny_sensevoice(model_dir: Path, forced: ForcedOutput | None = None, seed: int = 0) -> Path:
    """Write the folder (config.yaml, configuration.json, am.mvn, tokenizer, model.pt); return it."""
    import torch

    model_dir.mkdir(parents=True, exist_ok=True)
    config_text = config_yaml()
    (model_dir / "config.yaml").write_text(config_text, encoding="utf-8")
    (model_dir / "configuration.json").write_text(json.dumps(CONFIGURATION_JSON, indent=2), encoding="utf-8")
    write_cmvn(model_dir / "am.mvn")
    processor = train_tokenizer(model_dir / TOKENIZER_FILE)

    torch.manual_seed(seed)
    state = make_model(config_text, processor.GetPieceSize()).state_dict()
    if forced is not None:
        _force(state, forced, processor)
    torch.save(state, model_dir / "model.pt")
    return model_dir


def make_model(config_text: str, vocab_size: int):
    """funasr's registered class for the config's `model`, built the way AutoModel builds it."""
    import yaml
    from funasr.register import tables

    config = yaml.safe_load(config_text)
    return tables.model_classes[config["model"]](
        encoder=config["encoder"],
        encoder_conf=config["encoder_conf"],
        input_size=FEATURE_DIM,
        vocab_size=vocab_size,
        **config["model_conf"],
    )


def train_tokenizer(path: Path):
    """A BPE SentencePiece model with every SenseVoice tag as a user-defined piece; id 0 is <unk>,
    which SenseVoiceSmall uses as the CTC blank, as in the real tokenizer."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS * 4),
        model_writer=model,
        model_type="bpe",
        vocab_size=100,
        hard_vocab_limit=False,
        character_coverage=1.0,
        user_defined_symbols=list(TAGS),
        minloglevel=2,
    )
    path.write_bytes(model.getvalue())
    processor = spm.SentencePieceProcessor()
    processor.Load(str(path))
    return processor


def write_cmvn(path: Path) -> None:
    """Global mean/variance in the Kaldi nnet text format funasr's WavFrontend reads: an AddShift
    (minus the mean) and a Rescale (one over the deviation) over all 560 stacked inputs. The values
    are typical of log-mel energies of 16-bit-scaled speech, so features land near zero mean."""
    shift = " ".join(["-11.0"] * FEATURE_DIM)
    scale = " ".join(["0.25"] * FEATURE_DIM)
    path.write_text(
        "<Nnet>\n"
        f"<Splice> {FEATURE_DIM} {FEATURE_DIM}\n"
        "[ 0 ]\n"
        f"<AddShift> {FEATURE_DIM} {FEATURE_DIM}\n"
        f"<LearnRateCoef> 0 [ {shift} ]\n"
        f"<Rescale> {FEATURE_DIM} {FEATURE_DIM}\n"
        f"<LearnRateCoef> 0 [ {scale} ]\n"
        "</Nnet>\n",
        encoding="utf-8",
    )


def _force(state: dict, forced: ForcedOutput, processor) -> None:
    """Rewire `state` in place (see the module docstring). Sizes: a query row's marker input is
    50 * sqrt(32) before the first LayerNorm, about 23.6 after it; audio frames have no input above
    about 4 after it, so the constant audio channel (12) wins there and loses at the queries."""
    rows = sorted(forced.row_tags)
    speech_channel = len(rows)
    assert speech_channel < ENCODER_DIM
    ids = {tag: processor.PieceToId(tag) for tag in [*forced.row_tags.values(), forced.speech_piece]}
    unknown = [tag for tag, token in ids.items() if token == processor.unk_id()]
    assert not unknown, f"not in the tiny tokenizer: {unknown}"

    def marker(row: int) -> int:
        return 35 * row + 3  # spread over the 560 inputs; rows go up to 15

    for name, tensor in state.items():
        mixing = ("linear_out", "fsmn_block", "feed_forward.w_2")
        if any(part in name for part in mixing) or ("tp_encoders" in name and "linear_q_k_v" in name):
            tensor.zero_()  # no attention, FSMN memory or feed-forward: each frame on its own

    state["embed.weight"].zero_()
    qkv_weight = state["encoder.encoders0.0.self_attn.linear_q_k_v.weight"].zero_()
    qkv_bias = state["encoder.encoders0.0.self_attn.linear_q_k_v.bias"].zero_()
    ctc_weight = state["ctc.ctc_lo.weight"].zero_()
    state["ctc.ctc_lo.bias"].zero_()
    value = 2 * ENCODER_DIM  # q, k, v are stacked; v is what reaches the output
    for channel, row in enumerate(rows):
        state["embed.weight"][row, marker(row)] = 50.0
        qkv_weight[value + channel, marker(row)] = 1.0
        ctc_weight[ids[forced.row_tags[row]], channel] = 20.0
    qkv_bias[value + speech_channel] = 12.0
    ctc_weight[ids[forced.speech_piece], speech_channel] = 20.0
