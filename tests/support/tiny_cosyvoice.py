"""A tiny random-weight CosyVoice 2 model folder, built from CosyVoice's real classes.

The folder has the layout of a downloaded CosyVoice2-0.5B (`cosyvoice2.yaml`, `llm.pt`,
`flow.pt`, `hift.pt`, `campplus.onnx`, `speech_tokenizer_v2.onnx`, `CosyVoice-BlankEN/`), so
upstream's `CosyVoice2(model_dir)` loads it through its own code: the yaml names the same classes
as upstream's (Qwen2LM, CausalMaskedDiffWithXvec, UpsampleConformerEncoder, CausalConditionalCFM,
CausalConditionalDecoder, HiFTGenerator, ConvRNNF0Predictor) with small widths and depths.

What no package carries, and what stands in for it here:
- `CosyVoice-BlankEN/` (Qwen2-0.5B's config, weights and tokenizer): a 1-layer, 64-wide Qwen2
  with random weights and a byte-level BPE tokenizer trained on a few sentences on the spot;
- `campplus.onnx` (the speaker encoder): mean of the fbank frames times a random 80x192 matrix;
- `speech_tokenizer_v2.onnx` (the S3 tokenizer): every 4th Whisper mel frame (100 Hz -> 25 Hz),
  projected and arg-maxed to a token id below the speech vocabulary;
- `llm.pt`, `flow.pt`, `hift.pt`: the random state of the modules the yaml builds.
The audio is therefore noise; what runs for real is upstream's code around the weights.

Runs inside .venv-cosyvoice (it imports torch, transformers, onnx and upstream's modules).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPEECH_VOCAB = 512  # upstream: 6561; a smaller one keeps the random LLM's end token rare too
SPK_EMBED_DIM = 192  # campplus' output width, as upstream

# The seed lines make every load build the same fixed flow noise (CausalConditionalCFM draws it
# in its constructor), so two loads of the folder give the same audio for the same sampling seed.
TINY_YAML = f"""
__set_seed1: !apply:random.seed [1986]
__set_seed2: !apply:numpy.random.seed [1986]
__set_seed3: !apply:torch.manual_seed [1986]
sample_rate: 24000
llm_input_size: 64
llm_output_size: 64
spk_embed_dim: {SPK_EMBED_DIM}
qwen_pretrain_path: ''
token_frame_rate: 25
token_mel_ratio: 2

llm: !new:cosyvoice.llm.llm.Qwen2LM
    llm_input_size: !ref <llm_input_size>
    llm_output_size: !ref <llm_output_size>
    speech_token_size: {SPEECH_VOCAB}
    length_normalized_loss: True
    lsm_weight: 0
    mix_ratio: [5, 15]
    llm: !new:cosyvoice.llm.llm.Qwen2Encoder
        pretrain_path: !ref <qwen_pretrain_path>
    sampling: !name:cosyvoice.utils.common.ras_sampling
        top_p: 0.8
        top_k: 25
        win_size: 10
        tau_r: 0.1

flow: !new:cosyvoice.flow.flow.CausalMaskedDiffWithXvec
    input_size: 512  # UpsampleConformerEncoder hard-codes 512 channels in its lookahead and upsampling
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: {SPEECH_VOCAB}
    input_frame_rate: !ref <token_frame_rate>
    only_mask_loss: True
    token_mel_ratio: !ref <token_mel_ratio>
    pre_lookahead_len: 3
    encoder: !new:cosyvoice.transformer.upsample_encoder.UpsampleConformerEncoder
        output_size: 512
        attention_heads: 2
        linear_units: 128
        num_blocks: 1
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: 512
        use_cnn_module: False
        macaron_style: False
        use_dynamic_chunk: True
    decoder: !new:cosyvoice.flow.flow_matching.CausalConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'
        estimator: !new:cosyvoice.flow.decoder.CausalConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [64]
            dropout: 0.0
            attention_head_dim: 16
            n_blocks: 1
            num_mid_blocks: 1
            num_heads: 2
            act_fn: 'gelu'
            static_chunk_size: 50
            num_decoding_left_chunks: 2

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: 32
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 5, 3]
    upsample_kernel_sizes: [16, 11, 7]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3, 7, 11]
    resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    source_resblock_kernel_sizes: [7, 7, 11]
    source_resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: 32

get_tokenizer: !name:cosyvoice.tokenizer.tokenizer.get_qwen_tokenizer
    token_path: !ref <qwen_pretrain_path>
    skip_special_tokens: True
allowed_special: 'all'
feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: 1920
    num_mels: 80
    sampling_rate: !ref <sample_rate>
    hop_size: 480
    win_size: 1920
    fmin: 0
    fmax: 8000
    center: False
"""


def build_model_dir(model_dir: Path, corpus: list[str]) -> Path:
    """Write the whole folder; `corpus` trains the tokenizer (any text still encodes: byte-level)."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    blank = model_dir / "CosyVoice-BlankEN"
    blank.mkdir(parents=True, exist_ok=True)
    write_tiny_qwen(blank, corpus)
    (model_dir / "cosyvoice2.yaml").write_text(TINY_YAML, encoding="utf-8")
    with (model_dir / "cosyvoice2.yaml").open(encoding="utf-8") as handle:
        configs = load_hyperpyyaml(handle, overrides={"qwen_pretrain_path": str(blank)})
    for name in ("llm", "flow", "hift"):
        torch.save(configs[name].state_dict(), model_dir / f"{name}.pt")
    write_tiny_onnx(model_dir)
    return model_dir


def write_tiny_qwen(folder: Path, corpus: list[str]) -> None:
    """A random 1-layer Qwen2 and a byte-level BPE tokenizer in the layout of CosyVoice-BlankEN."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>")
    tokenizer.save_pretrained(str(folder))
    config = Qwen2Config(
        vocab_size=1024,  # the BPE's 400 plus the special tokens upstream's QwenTokenizer adds
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(str(folder))


def write_tiny_onnx(model_dir: Path) -> None:
    """campplus.onnx and speech_tokenizer_v2.onnx with the inputs and outputs the frontend uses."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    speaker = rng.standard_normal((80, SPK_EMBED_DIM)).astype(np.float32) * 0.1
    campplus = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["fbank"], ["mean"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["mean", "speaker"], ["embedding"]),
        ],
        "campplus",
        [helper.make_tensor_value_info("fbank", TensorProto.FLOAT, [1, None, 80])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, SPK_EMBED_DIM])],
        [numpy_helper.from_array(speaker, "speaker")],
    )
    codebook = rng.standard_normal((128, SPEECH_VOCAB)).astype(np.float32)
    steps = {"starts": [0], "ends": [2**62], "axes": [2], "steps": [4]}  # 100 Hz mel -> 25 Hz tokens
    tokenizer = helper.make_graph(
        [
            helper.make_node("Slice", ["feats", "starts", "ends", "axes", "steps"], ["every4"]),
            helper.make_node("Transpose", ["every4"], ["frames"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["frames", "codebook"], ["scores"]),
            helper.make_node("ArgMax", ["scores"], ["tokens"], axis=2, keepdims=0),
            # feats_length is an input upstream feeds; a real tokenizer masks with it
            helper.make_node("Identity", ["feats_length"], ["unused_length"]),
        ],
        "speech_tokenizer",
        [
            helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, None]),
            helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1]),
        ],
        [
            helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, None]),
            helper.make_tensor_value_info("unused_length", TensorProto.INT32, [1]),
        ],
        [numpy_helper.from_array(np.array(v, dtype=np.int64), k) for k, v in steps.items()]
        + [numpy_helper.from_array(codebook, "codebook")],
    )
    for graph, name in ((campplus, "campplus.onnx"), (tokenizer, "speech_tokenizer_v2.onnx")):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, str(model_dir / name))
