import json

import pytest
from fakes import COMMIT, FolderHub

from i2peval.models.architectures import ARCHITECTURES, ArchitectureError, snapshot_architecture
from i2peval.models.download import ModelError, fetch_hub_model, select_pipeline_files
from i2peval.models.snapshots import (
    SnapshotMismatch,
    read_model_record,
    verify_snapshot,
)
from i2peval.models.tiny import build_tiny_pipeline
from i2peval.storage import RecordError

# The file list of a Stable Diffusion 1.x repository on the hub (CompVis/stable-diffusion-v1-4 style).
SD_REPO_FILES = [
    ".gitattributes",
    "README.md",
    "model_index.json",
    "v1-inference.yaml",
    "sd-v1-4.ckpt",
    "feature_extractor/preprocessor_config.json",
    "safety_checker/config.json",
    "safety_checker/model.safetensors",
    "safety_checker/pytorch_model.bin",
    "safety_checker/flax_model.msgpack",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder/model.fp16.safetensors",
    "text_encoder/pytorch_model.bin",
    "text_encoder/flax_model.msgpack",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.non_ema.safetensors",
    "unet/diffusion_pytorch_model.bin",
    "unet/diffusion_flax_model.msgpack",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.fp16.bin",
    "vae/diffusion_pytorch_model.bin",
]


def test_select_pipeline_files_picks_configs_tokenizer_and_plain_safetensors():
    assert select_pipeline_files(SD_REPO_FILES, "org/sd") == [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ]


@pytest.mark.parametrize("folder", ["unet", "vae", "text_encoder"])
def test_weight_folder_with_only_pickled_weights_is_refused_naming_it(folder):
    safetensors_free = [
        path for path in SD_REPO_FILES if not (path.startswith(folder + "/") and path.endswith(".safetensors"))
    ]
    with pytest.raises(ModelError, match=rf"org/sd: {folder}/"):
        select_pipeline_files(safetensors_free, "org/sd")


def test_repository_without_model_index_is_refused():
    with pytest.raises(ModelError, match="org/sd.*model_index.json"):
        select_pipeline_files([path for path in SD_REPO_FILES if path != "model_index.json"], "org/sd")


@pytest.fixture(scope="module")
def tiny_pipelines(tmp_path_factory):
    """Records of two builds with seed 1 and one with seed 2, and the first one's folder."""
    root = tmp_path_factory.mktemp("tiny")
    first = build_tiny_pipeline(root / "seed1-a", seed=1)
    again = build_tiny_pipeline(root / "seed1-b", seed=1)
    other_seed = build_tiny_pipeline(root / "seed2", seed=2)
    return first, again, other_seed, root / "seed1-a"


def test_tiny_pipeline_is_a_function_of_its_seed(tiny_pipelines):
    first, again, other_seed, _ = tiny_pipelines
    assert first["files"] == again["files"]
    unet_weights = "unet/diffusion_pytorch_model.safetensors"
    assert first["files"][unet_weights] != other_seed["files"][unet_weights]
    assert first["files"]["unet/config.json"] == other_seed["files"]["unet/config.json"]


def test_tiny_pipeline_tokenizer_gives_real_clip_token_ids(tiny_pipelines):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny_pipelines[3] / "tokenizer")
    assert tokenizer("a cat").input_ids == [49406, 320, 2368, 49407]
    assert tokenizer("a photo of a dog").input_ids == [49406, 320, 1125, 539, 320, 1929, 49407]
    assert len(tokenizer) == 49408


def copied_snapshot(tiny_pipelines, tmp_path):
    import shutil

    first, _, other_seed, folder = tiny_pipelines
    snapshot = tmp_path / "snapshot"
    shutil.copytree(folder, snapshot)
    return first, snapshot, folder.parent / "seed2"


def test_a_snapshot_matching_its_record_is_verified(tiny_pipelines, tmp_path):
    record, snapshot, _ = copied_snapshot(tiny_pipelines, tmp_path)
    (snapshot / ".snakemake_timestamp").write_text("")
    verify_snapshot(snapshot, record, tmp_path / "model.json")


def test_weights_of_another_model_copied_into_a_snapshot_are_refused_before_loading(tiny_pipelines, tmp_path):
    import shutil

    record, snapshot, other = copied_snapshot(tiny_pipelines, tmp_path)
    unet = "unet/diffusion_pytorch_model.safetensors"
    shutil.copyfile(other / unet, snapshot / unet)
    with pytest.raises(
        SnapshotMismatch,
        match=rf"snapshot does not match .*model.json: sha256 differs from the record for \['{unet}'\]",
    ):
        verify_snapshot(snapshot, record, tmp_path / "model.json")


def test_missing_and_unlisted_snapshot_files_are_named(tiny_pipelines, tmp_path):
    record, snapshot, _ = copied_snapshot(tiny_pipelines, tmp_path)
    (snapshot / "vae" / "config.json").unlink()
    (snapshot / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(
        SnapshotMismatch,
        match=r"missing \['vae/config.json'\]; not in the record \['unet/diffusion_pytorch_model.bin'\]",
    ):
        verify_snapshot(snapshot, record, tmp_path / "model.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"source": "tiny", "files": {"a": ', r"model.json: not a readable JSON record \(Expecting value: line 1"),
        ("[1, 2]", "model.json: holds a JSON list, expected an object"),
        ('{"source": "tiny"}', r"model.json: lacks \['architecture', 'files'\]"),
        (
            '{"source": "tiny", "architecture": "sd", "files": {}}',
            "model.json: 'files' must map every snapshot file to its sha256",
        ),
    ],
)
def test_a_damaged_model_record_is_refused_naming_its_path(tmp_path, content, message):
    path = tmp_path / "model.json"
    path.write_text(content)
    with pytest.raises(RecordError, match=message):
        read_model_record(path)


SDXL_REPO_FILES = [
    *SD_REPO_FILES,
    "text_encoder_2/config.json",
    "text_encoder_2/model.safetensors",
    "text_encoder_2/model.fp16.safetensors",
    "tokenizer_2/merges.txt",
    "tokenizer_2/special_tokens_map.json",
    "tokenizer_2/tokenizer_config.json",
    "tokenizer_2/vocab.json",
    "vae_decoder/model.onnx",
]


def test_sdxl_selection_adds_the_second_text_encoder_and_tokenizer():
    selected = select_pipeline_files(SDXL_REPO_FILES, "org/sdxl", ARCHITECTURES["sdxl"])
    assert sorted(set(selected) - set(select_pipeline_files(SDXL_REPO_FILES, "org/sdxl"))) == [
        "text_encoder_2/config.json",
        "text_encoder_2/model.safetensors",
        "tokenizer_2/merges.txt",
        "tokenizer_2/special_tokens_map.json",
        "tokenizer_2/tokenizer_config.json",
        "tokenizer_2/vocab.json",
    ]


def unsupported_repository(folder, pipeline_class):
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": pipeline_class}))
    (folder / "unet").mkdir()
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 1024)
    return folder


@pytest.mark.parametrize("pipeline_class", ["KandinskyPipeline", "FluxPipeline", "PaellaPipeline"])
def test_unsupported_pipeline_class_is_refused_before_any_weights_are_fetched(tmp_path, pipeline_class):
    hub = FolderHub(unsupported_repository(tmp_path / "repo", pipeline_class))
    with pytest.raises(
        ArchitectureError,
        match=rf"org/model@main: pipeline class '{pipeline_class}' is not supported; this project runs "
        r"StableDiffusionPipeline, StableDiffusionXLPipeline",
    ):
        fetch_hub_model(hub, "org/model", "main", tmp_path / "snapshot")
    assert hub.downloaded == ["model_index.json"]


def test_local_snapshot_of_an_unsupported_class_is_refused_when_loaded(tmp_path):
    snapshot = unsupported_repository(tmp_path / "snapshot", "PaellaPipeline")
    with pytest.raises(ArchitectureError, match="'PaellaPipeline' is not supported"):
        snapshot_architecture(snapshot)


def test_hub_sdxl_snapshot_is_fetched_with_its_architecture_recorded(tiny_sdxl_snapshot, tmp_path):
    hub = FolderHub(tiny_sdxl_snapshot)
    record = fetch_hub_model(hub, "org/sdxl", "main", tmp_path / "snapshot")
    assert record["architecture"] == "sdxl"
    assert record["pipeline_class"] == "StableDiffusionXLPipeline"
    assert (record["scheduler"], record["prediction_type"]) == ("EulerDiscreteScheduler", "epsilon")
    assert (record["revision"], record["commit"]) == ("main", COMMIT)
    assert "text_encoder_2/model.safetensors" in record["files"]
    assert "tokenizer_2/tokenizer.json" in record["files"]


def test_hub_alt_diffusion_snapshot_is_fetched_with_its_sentencepiece_tokenizer_and_loads(tiny_alt_snapshot, tmp_path):
    import torch

    from i2peval.generation.latent_models import load_latent_model

    hub = FolderHub(tiny_alt_snapshot)
    record = fetch_hub_model(hub, "BAAI/AltDiffusion-m9", "main", tmp_path / "snapshot")
    assert (record["architecture"], record["pipeline_class"]) == ("alt", "AltDiffusionPipeline")
    assert "tokenizer/sentencepiece.bpe.model" in record["files"]
    assert "tokenizer/tokenizer.json" not in record["files"]  # transformers converts the sentencepiece model
    model = load_latent_model(tmp_path / "snapshot", torch.float32, torch.device("cpu"))
    assert type(model.text_encoders[0]).__name__ == "RobertaSeriesModelWithTransformation"
    assert type(model.tokenizers[0]).__name__ == "XLMRobertaTokenizer"


def test_tiny_sdxl_pipeline_mirrors_sdxl_base(tiny_sdxl_snapshot):
    from transformers import CLIPTokenizer

    index = json.loads((tiny_sdxl_snapshot / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert index["force_zeros_for_empty_prompt"] is True
    first = CLIPTokenizer.from_pretrained(tiny_sdxl_snapshot / "tokenizer")
    second = CLIPTokenizer.from_pretrained(tiny_sdxl_snapshot / "tokenizer_2")
    assert first.pad_token == "<|endoftext|>" and second.pad_token == "!"
    assert second("a cat").input_ids == [49406, 320, 2368, 49407]
    vae = json.loads((tiny_sdxl_snapshot / "vae" / "config.json").read_text())
    assert (vae["scaling_factor"], vae["force_upcast"]) == (0.13025, True)
