"""Machine learning for dacast.

Nowcasting (mission §S3): a multi-scale ConvLSTM encoder–forecaster (Shi et al.
2015) with an optional extrapolation-nowcast input ("ConvLSTM with obs +
nowcasting"), spatial and temporal discriminators (Ravuri et al. 2021), the
intensity-weighted Huber, adversarial and non-local losses, random-crop
datasets of radar sequences, and a resumable training loop. Networks work in
log-rain space ``z = log(1 + R)``, R in mm/h (`rain_to_log`, `log_to_rain`).
"""

from dacast.ml.convlstm import ConvLSTMCell, ConvLSTMConfig, ConvLSTMNowcaster, log_to_rain, rain_to_log
from dacast.ml.discriminators import DiscriminatorConfig, SpatialDiscriminator, TemporalDiscriminator
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
from dacast.ml.nowcast_predict import load_nowcaster, predict
from dacast.ml.nowcast_train import NowcastTrainConfig, TrainResult, resolve_device, train_nowcast

__all__ = [
    "ConvLSTMCell",
    "ConvLSTMConfig",
    "ConvLSTMNowcaster",
    "DiscriminatorConfig",
    "ExtrapolationFn",
    "NowcastDataConfig",
    "NowcastLossConfig",
    "NowcastTrainConfig",
    "RainArray",
    "RainCropDataset",
    "SpatialDiscriminator",
    "TemporalDiscriminator",
    "TrainResult",
    "discriminator_adversarial_loss",
    "discriminator_loss",
    "generator_adversarial_loss",
    "generator_loss",
    "intensity_weight",
    "load_nowcaster",
    "log_to_rain",
    "moving_blobs",
    "nonlocal_loss",
    "predict",
    "rain_to_log",
    "resolve_device",
    "split_by_time",
    "train_nowcast",
    "weighted_huber_loss",
]
