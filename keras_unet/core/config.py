"""Every setting of the project, in one typed place.

Frozen dataclasses hold the defaults; derived values are properties, never
stored twice. The command lines build their flags from these fields, the
pipeline and the model read them, and every saved model carries the JSON of
its `RunConfig`, so a model file alone is enough to use it.
"""

import dataclasses
import json
import os
from typing import Optional

PRESETS = ("seed", "paper", "voices")
# What a preset sets beside the architecture: defaults of other sections' fields, which
# flags given on the command line still override. "voices" is the seed network with the
# recipe that measured best on MIR-1K (README, "What generalises"): a finer STFT, pitch-
# shifted vocals and the L1 on both sources.
PRESET_DEFAULTS = {
    "voices": {"stft": {"hop_samples": 256}, "data": {"augment_pitch_semitones": 3.0},
               "train": {"loss_sources": "both"}},
}
STRATEGIES = ("auto", "mirrored", "multiworker")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
LR_SCHEDULES = ("constant", "cosine", "plateau")
STFT_DEVICES = ("auto", "cpu")
LOSS_SOURCES = ("vocals", "both")
WINDOWS = ("hann", "hamming")
EXPORT_KINDS = ("mask", "separator", "both")  # SavedModel signatures (keras_unet.export)
RUN_CONFIG_FILE = "config.json"  # the RunConfig JSON beside checkpoints and in exports
HISTORY_FILE = "history.csv"  # per-epoch losses, in TrainConfig.save_dir
KERAS_FILE = "model.keras"  # the Keras model inside an export folder
BEST_MODEL_FILE = "best_model.keras"  # the best checkpoint, in TrainConfig.save_dir
MASK_LAYER = "mask_deconv"  # the model's layer before the mask's sigmoid
SUBSETS = ("train", "test")  # the subsets of MUSDB18 and of MIR-1K's standard split
INFERENCE_BATCH_SIZE = 8  # patches per model call when a model separates (a fixed shape)
MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "saved_models")
"""The models folder, beside the code rather than in the current folder, so the
command lines find the shipped model from any folder."""
DEFAULT_MODEL = os.path.join(MODELS_DIR, "default")  # the shipped model


# Settings a resumed run may change: where things go and how it reports, not what it learns.
# (Not train.cpu: hiding the GPUs can change the precision `auto` picks, and with it the
# optimizer's state.)
RESUMABLE_CHANGES = frozenset({"train.log_every_steps", "train.export_dir",
                               "train.keep_checkpoints", "data.cache_dir",
                               "data.data_service", "data.stft_device"})


def _require(condition, message):
    if not condition:
        raise ValueError(message)


@dataclasses.dataclass(frozen=True)
class StftConfig:
    """Short-time Fourier transform and patch settings (Jansson et al. 2017).

    Args:
        sample_rate_hz: rate the model works at; audio is resampled to it.
        n_fft: FFT size and window length, in samples.
        hop_samples: distance between frames, in samples.
        window: window function, "hann" or "hamming".
        patch_frames: frames in one model input patch (T).
    """

    sample_rate_hz: int = 8192
    n_fft: int = 1024
    hop_samples: int = 768
    window: str = "hann"
    patch_frames: int = 128

    def __post_init__(self):
        _require(self.sample_rate_hz > 0,
                 f"`sample_rate_hz` must be positive. Received: {self.sample_rate_hz}")
        _require(self.n_fft >= 16 and self.n_fft % 2 == 0,
                 f"`n_fft` must be an even number >= 16. Received: {self.n_fft}")
        _require(0 < self.hop_samples <= self.n_fft,
                 f"`hop_samples` must be in [1, n_fft={self.n_fft}]. "
                 f"Received: {self.hop_samples}")
        _require(self.window in WINDOWS,
                 f"`window` must be one of {WINDOWS}. Received: {self.window!r}")
        _require(self.patch_frames > 0,
                 f"`patch_frames` must be positive. Received: {self.patch_frames}")

    @property
    def n_bins(self) -> int:
        """Frequency bins of a one-sided spectrum (F)."""
        return self.n_fft // 2 + 1

    @property
    def patch_seconds(self) -> float:
        """Audio duration covered by one patch."""
        return self.patch_frames * self.hop_samples / self.sample_rate_hz


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """U-Net architecture. Use `ModelConfig.from_preset(name)` for the named ones.

    Encoder layer i has `base_channels * 2**i` channels; the decoder mirrors
    it. "seed" is the course brief's 4-layer net, "paper" is Jansson et al.
    2017 (6 layers, 16..512 channels, batch norm, ReLU + 50% dropout in the
    first three decoder layers).

    Args:
        preset: name of the preset these values came from (informative).
        depth: number of encoder (and decoder) layers.
        base_channels: channels of the first encoder layer.
        kernel_size: square kernel size of every (transposed) convolution.
        leaky_slope: negative slope of the encoder's LeakyReLU.
        batch_norm: batch normalisation after every layer but the last.
        decoder_activation: "leaky_relu" or "relu".
        decoder_dropout_layers: how many of the first decoder layers use dropout.
        dropout_rate: dropout rate of those layers.
    """

    preset: str = "seed"
    depth: int = 4
    base_channels: int = 32
    kernel_size: int = 5
    leaky_slope: float = 0.2
    batch_norm: bool = False
    decoder_activation: str = "leaky_relu"
    decoder_dropout_layers: int = 0
    dropout_rate: float = 0.5

    def __post_init__(self):
        _require(self.preset in PRESETS,
                 f"`preset` must be one of {PRESETS}. Received: {self.preset!r}")
        _require(self.depth >= 1, f"`depth` must be >= 1. Received: {self.depth}")
        _require(self.base_channels >= 1,
                 f"`base_channels` must be >= 1. Received: {self.base_channels}")
        _require(self.kernel_size >= 1,
                 f"`kernel_size` must be >= 1. Received: {self.kernel_size}")
        _require(self.decoder_activation in ("leaky_relu", "relu"),
                 "`decoder_activation` must be 'leaky_relu' or 'relu'. "
                 f"Received: {self.decoder_activation!r}")
        _require(0 <= self.decoder_dropout_layers < self.depth,
                 f"`decoder_dropout_layers` must be in [0, depth={self.depth}). "
                 f"Received: {self.decoder_dropout_layers}")
        _require(0.0 <= self.dropout_rate < 1.0,
                 f"`dropout_rate` must be in [0, 1). Received: {self.dropout_rate}")

    @classmethod
    def from_preset(cls, name: str) -> "ModelConfig":
        """The named preset's architecture: "seed" (default), "paper" or "voices" (seed's)."""
        if name in ("seed", "voices"):
            return cls(preset=name)
        if name == "paper":
            return cls(preset="paper", depth=6, base_channels=16, batch_norm=True,
                       decoder_activation="relu", decoder_dropout_layers=3)
        raise ValueError(f"`preset` must be one of {PRESETS}. Received: {name!r}")

    @property
    def channels(self) -> tuple:
        """Output channels of each encoder layer, shallowest first."""
        return tuple(self.base_channels * 2**i for i in range(self.depth))

    @property
    def size_multiple(self) -> int:
        """Inputs are padded inside the model to a multiple of this (2**depth)."""
        return 2**self.depth


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where training audio comes from and how it is turned into patches.

    Args:
        musdb_root: MUSDB18 root folder (None, and no mir1k_root: the bundled
            stempeg clip).
        is_wav: the root holds MUSDB18-HQ (`.wav` folders) instead of `.stem.mp4`.
        mir1k_root: MIR-1K folder (the unzipped MIR-1K/ or its Wavfile/);
            trains on its training singers, abjones and amy.
        n_songs: use the first N songs of the training split ("all" or None: all).
        cache_dir: folder for decoded waveforms on disk (None: memory only).
        stereo_as_examples: use each stereo channel as its own example
            instead of downmixing to mono.
        augment_gain: random gain in [0.25, 1.25] per source.
        augment_remix: mix the vocals of one track with the accompaniment of
            another (or of the same track at another offset).
        augment_swap: random swap of the stereo channels before downmix.
        augment_pitch_semitones: largest pitch shift of the vocals, up or
            down, in semitones, drawn uniformly per patch (by resampling, so
            the tempo follows the pitch); 0: off.
        silent_patch_rate: largest share of training patches with silent
            vocals that is kept.
        patches_per_epoch: training patches drawn per epoch.
        validation_seconds: length of the bundled clip's end held out for
            validation.
        validation_share: MIR-1K: share of each singer's songs held out
            (whole songs) for validation.
        validation_singer: MIR-1K: hold out every song of this training
            singer for validation, and train on the other's (a cross-singer
            check: the score of a voice the model never heard); None: a
            share of each singer's songs.
        data_service: address of a tf.data service dispatcher
            ("grpc://host:port") whose workers make the training batches
            (None: this process makes them).
        stft_device: where the training pipeline's STFT runs: "auto", on
            the GPU of a one-GPU run, else the CPU; or "cpu".
    """

    musdb_root: Optional[str] = None
    is_wav: bool = False
    mir1k_root: Optional[str] = None
    n_songs: Optional[int] = None
    cache_dir: Optional[str] = None
    stereo_as_examples: bool = False
    augment_gain: bool = True
    augment_remix: bool = True
    augment_swap: bool = True
    augment_pitch_semitones: float = 0.0
    silent_patch_rate: float = 0.1
    patches_per_epoch: int = 64
    validation_seconds: float = 1.5
    validation_share: float = 0.15
    validation_singer: Optional[str] = None
    data_service: Optional[str] = None
    stft_device: str = "auto"

    def __post_init__(self):
        _require(self.musdb_root is None or self.mir1k_root is None,
                 "`musdb_root` and `mir1k_root` cannot both be set: train on one dataset. "
                 f"Received: {self.musdb_root!r} and {self.mir1k_root!r}")
        _require(self.n_songs is None or self.n_songs >= 1,
                 f"`n_songs` must be >= 1. Received: {self.n_songs}")
        _require(0.0 <= self.silent_patch_rate <= 1.0,
                 f"`silent_patch_rate` must be in [0, 1]. Received: {self.silent_patch_rate}")
        _require(self.patches_per_epoch >= 1,
                 f"`patches_per_epoch` must be >= 1. Received: {self.patches_per_epoch}")
        _require(self.validation_seconds > 0,
                 f"`validation_seconds` must be positive. Received: {self.validation_seconds}")
        _require(self.stft_device in STFT_DEVICES,
                 f"`stft_device` must be one of {STFT_DEVICES}. Received: {self.stft_device!r}")
        _require(0.0 <= self.validation_share < 1.0,
                 f"`validation_share` must be in [0, 1). Received: {self.validation_share}")
        _require(0.0 <= self.augment_pitch_semitones <= 12.0,
                 "`augment_pitch_semitones` must be in [0, 12]. "
                 f"Received: {self.augment_pitch_semitones}")
        _require(self.validation_singer is None or self.mir1k_root is not None,
                 "`validation_singer` holds out a MIR-1K singer: it needs `mir1k_root`. "
                 f"Received: {self.validation_singer!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation and run settings of `train.py`.

    Args:
        epochs: number of epochs.
        batch_size: global batch size (split across replicas).
        learning_rate: Adam learning rate (the peak, with a schedule).
        loss_sources: "vocals", the brief's L1 on the vocals, mean |M X - V|;
            or "both", plus the accompaniment's, mean |(1 - M) X - A|.
        lr_schedule: "constant"; "cosine", decay to 1% of it by the last
            step; or "plateau", halve it after `plateau_epochs` epochs
            without a better validation vocals SI-SDR.
        warmup_steps: steps of linear warm-up from 0 to the learning rate
            (constant and cosine schedules).
        plateau_epochs: patience of the plateau schedule, in epochs.
        early_stopping_epochs: stop after this many epochs without a better
            validation vocals SI-SDR (None: never).
        init_mask_bias: start the mask at the constant with the lowest loss
            on the training data, not at 0.5.
        keep_checkpoints: numbered checkpoints kept, the newest (None: all);
            best_model.keras and final_model.keras are always kept.
        seed: random seed of weights, offsets and augmentation.
        save_dir: folder of checkpoints, history and TensorBoard logs.
        export_dir: SavedModel folder (None: saved_models/<run name>).
        strategy: "auto", "mirrored" or "multiworker".
        precision: "auto" (by the device), "float32", "mixed_bfloat16" or
            "mixed_float16" (with loss scaling).
        cpu: hide GPUs.
        log_every_steps: TensorBoard training-loss period, in steps.
    """

    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 1e-3
    loss_sources: str = "vocals"
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    plateau_epochs: int = 5
    early_stopping_epochs: Optional[int] = None
    init_mask_bias: bool = True
    keep_checkpoints: Optional[int] = 3
    seed: int = 0
    save_dir: str = "checkpoints"
    export_dir: Optional[str] = None
    strategy: str = "auto"
    precision: str = "float32"
    cpu: bool = False
    log_every_steps: int = 10

    def __post_init__(self):
        _require(self.epochs >= 1, f"`epochs` must be >= 1. Received: {self.epochs}")
        _require(self.batch_size >= 1,
                 f"`batch_size` must be >= 1. Received: {self.batch_size}")
        _require(self.learning_rate > 0,
                 f"`learning_rate` must be positive. Received: {self.learning_rate}")
        _require(self.loss_sources in LOSS_SOURCES,
                 f"`loss_sources` must be one of {LOSS_SOURCES}. Received: {self.loss_sources!r}")
        _require(self.lr_schedule in LR_SCHEDULES,
                 f"`lr_schedule` must be one of {LR_SCHEDULES}. Received: {self.lr_schedule!r}")
        _require(self.warmup_steps >= 0,
                 f"`warmup_steps` must be >= 0. Received: {self.warmup_steps}")
        _require(self.warmup_steps == 0 or self.lr_schedule != "plateau",
                 "`warmup_steps` works with the constant and cosine schedules, not plateau. "
                 f"Received: warmup_steps={self.warmup_steps}")
        _require(self.plateau_epochs >= 1,
                 f"`plateau_epochs` must be >= 1. Received: {self.plateau_epochs}")
        _require(self.keep_checkpoints is None or self.keep_checkpoints >= 1,
                 f"`keep_checkpoints` must be >= 1. Received: {self.keep_checkpoints}")
        _require(self.early_stopping_epochs is None or self.early_stopping_epochs >= 1,
                 f"`early_stopping_epochs` must be >= 1. Received: {self.early_stopping_epochs}")
        _require(self.strategy in STRATEGIES,
                 f"`strategy` must be one of {STRATEGIES}. Received: {self.strategy!r}")
        _require(self.log_every_steps >= 1,
                 f"`log_every_steps` must be >= 1. Received: {self.log_every_steps}")
        _require(self.precision in PRECISIONS,
                 f"`precision` must be one of {PRECISIONS}. Received: {self.precision!r}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; its JSON travels with every saved model."""

    stft: StftConfig = dataclasses.field(default_factory=StftConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        """Builds a config from a (possibly partial) nested dict."""
        parts = {"stft": StftConfig, "model": ModelConfig,
                 "data": DataConfig, "train": TrainConfig}
        unknown = set(values) - set(parts)
        _require(not unknown, f"Unknown config sections: {sorted(unknown)}")
        for name, kind in parts.items():
            fields = {field.name for field in dataclasses.fields(kind)}
            extra = sorted(set(values.get(name, {})) - fields)
            _require(not extra, f"Unknown `{name}` settings {extra}: written by another "
                                "version of keras_unet")
        return cls(**{name: kind(**values.get(name, {})) for name, kind in parts.items()})

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls.from_dict(json.loads(text))

    def differences(self, other: "RunConfig") -> list:
        """The settings ("section.field") whose values differ from `other`'s, sorted."""
        mine, theirs = dataclasses.asdict(self), dataclasses.asdict(other)
        return sorted(f"{section}.{name}" for section, values in mine.items()
                      for name, value in values.items() if theirs[section][name] != value)
