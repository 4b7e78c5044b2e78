"""Machine learning for dacast.

Nowcasting (mission §S3): a multi-scale ConvLSTM encoder–forecaster (Shi et al.
2015) with an optional extrapolation-nowcast input ("ConvLSTM with obs +
nowcasting"), spatial and temporal discriminators (Ravuri et al. 2021), the
intensity-weighted Huber, adversarial and non-local losses, random-crop
datasets of radar sequences, and a resumable training loop. Networks work in
log-rain space ``z = log(1 + R)``, R in mm/h (`rain_to_log`, `log_to_rain`).
`MultiResNowcaster` is the GSMaP-style generator that emits its forecast at several
resolutions, with a coarse-to-fine `ProgressiveSchedule` and per-resolution targets
(`multires_targets`) and a loss per resolution (`dacast.ml.nowcast_steps.multires_loss`), trained by the same loop
(`train_nowcast`); rain fields of the radar twin to pre-train it on are made by
`dacast.workflow.nowcast.twin_rain`. With latent noise (``noise_channels``) it is an ensemble
generator trained with the fair CRPS (`fair_crps_loss`) and run with `predict_ensemble`.

Generative data assimilation (mission §S7): EDM-style diffusion denoisers (`PeriodicDenoiserNet`),
posterior sampling with an observation likelihood (`posterior_sample`), a learned forecast-error
prior (`ForecastErrorPrior`, `train_error_prior`) and the diffusion filter (`DiffusionAnalyser`)
that plugs into the cycle engine.

Surrogates (mission §S2): an LSTM over a window of past states and a periodic
residual CNN (Brajard et al. 2020), both `dacast.models.Model`s, trained on
analysis trajectories (`windows_from_trajectory`, `train_surrogate`).
"""

from dacast.ml.convlstm import ConvLSTMCell, ConvLSTMConfig, ConvLSTMNowcaster, log_to_rain, rain_to_log
from dacast.ml.diffusion import DenoiserSpec, GaussianDenoiser, NoiseSchedule, PeriodicDenoiserNet, denoising_loss
from dacast.ml.diffusion_filter import DiffusionAnalyser, ErrorPriorSpec, ForecastErrorPrior, load_prior, save_prior
from dacast.ml.diffusion_hybrid import EnsembleBlend, HybridDenoiser
from dacast.ml.diffusion_sampling import GaussianLikelihood, SamplerConfig, posterior_sample, prior_to_noise
from dacast.ml.diffusion_train import DiffusionTrainConfig, train_error_prior
from dacast.ml.discriminators import DiscriminatorConfig, SpatialDiscriminator, TemporalDiscriminator
from dacast.ml.multires import (
    MultiResConfig,
    MultiResNowcaster,
    ProgressiveSchedule,
    multires_targets,
    pool_log_rain,
)
from dacast.ml.multires_members import forecast_members
from dacast.ml.nowcast_data import (
    ExtrapolationFn,
    NowcastDataConfig,
    RainArray,
    RainCropDataset,
    moving_blobs,
    split_by_time,
)
from dacast.ml.nowcast_losses import (
    NowcastLossConfig,
    discriminator_adversarial_loss,
    discriminator_loss,
    generator_adversarial_loss,
    generator_loss,
    intensity_weight,
    nonlocal_loss,
    weighted_huber_loss,
)
from dacast.ml.nowcast_predict import load_nowcaster, predict, predict_ensemble
from dacast.ml.nowcast_steps import fair_crps_loss
from dacast.ml.nowcast_train import Nowcaster, NowcastTrainConfig, TrainResult, resolve_device, train_nowcast
from dacast.ml.obsop import (
    AMSU_CHANNELS,
    LearnedRadianceOperator,
    RadianceNetwork,
    feature_names,
    radiance_features,
)
from dacast.ml.obsop_train import (
    RadianceTrainConfig,
    load_radiance_network,
    save_radiance_network,
    train_radiance_network,
    training_data_sha256,
)
from dacast.ml.shipped import shipped_model_card, shipped_nowcaster
from dacast.ml.surrogate import LSTMSurrogate, ResidualCNN, SurrogateNet, SurrogateSpec, build_surrogate
from dacast.ml.surrogate_train import (
    SurrogateData,
    SurrogateTrainConfig,
    SurrogateTrainResult,
    load_surrogate,
    save_surrogate,
    train_surrogate,
    windows_from_trajectory,
)

__all__ = [
    "AMSU_CHANNELS",
    "ConvLSTMCell",
    "ConvLSTMConfig",
    "ConvLSTMNowcaster",
    "DenoiserSpec",
    "DiffusionAnalyser",
    "DiffusionTrainConfig",
    "DiscriminatorConfig",
    "EnsembleBlend",
    "ErrorPriorSpec",
    "ExtrapolationFn",
    "ForecastErrorPrior",
    "GaussianDenoiser",
    "GaussianLikelihood",
    "HybridDenoiser",
    "LSTMSurrogate",
    "LearnedRadianceOperator",
    "MultiResConfig",
    "MultiResNowcaster",
    "NoiseSchedule",
    "NowcastDataConfig",
    "NowcastLossConfig",
    "NowcastTrainConfig",
    "Nowcaster",
    "PeriodicDenoiserNet",
    "ProgressiveSchedule",
    "RadianceNetwork",
    "RadianceTrainConfig",
    "RainArray",
    "RainCropDataset",
    "ResidualCNN",
    "SamplerConfig",
    "SpatialDiscriminator",
    "SurrogateData",
    "SurrogateNet",
    "SurrogateSpec",
    "SurrogateTrainConfig",
    "SurrogateTrainResult",
    "TemporalDiscriminator",
    "TrainResult",
    "build_surrogate",
    "denoising_loss",
    "discriminator_adversarial_loss",
    "discriminator_loss",
    "fair_crps_loss",
    "feature_names",
    "forecast_members",
    "generator_adversarial_loss",
    "generator_loss",
    "intensity_weight",
    "load_nowcaster",
    "load_prior",
    "load_radiance_network",
    "load_surrogate",
    "log_to_rain",
    "moving_blobs",
    "multires_targets",
    "nonlocal_loss",
    "pool_log_rain",
    "posterior_sample",
    "predict",
    "predict_ensemble",
    "prior_to_noise",
    "radiance_features",
    "rain_to_log",
    "resolve_device",
    "save_prior",
    "save_radiance_network",
    "save_surrogate",
    "shipped_model_card",
    "shipped_nowcaster",
    "split_by_time",
    "train_error_prior",
    "train_nowcast",
    "train_radiance_network",
    "train_surrogate",
    "training_data_sha256",
    "weighted_huber_loss",
    "windows_from_trajectory",
]
