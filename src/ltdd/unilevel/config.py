"""`UnilevelConfig`: YAML section `unilevel` (experts, recalibration, init, recovery, labels).

Defaults are the CPU profile of reference/unilevel-method.md §4 and §7; each switch that the spec
lists as an ablation or as an unresolved reading of the paper (R2-R13) is a field here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DebiasExpertConfig:
    """Observer/teacher training with GLMC's mixed views and losses (spec §1.2)."""

    model: str = "convnet_bn"
    width: int | None = field(default=64, metadata={"ge": 1})
    depth: int | None = field(default=None, metadata={"ge": 1})
    epochs: int = field(default=6, metadata={"ge": 1})
    batch_size: int = field(default=128, metadata={"ge": 2})
    lr: float = field(default=0.05, metadata={"gt": 0})
    momentum: float = field(default=0.9, metadata={"ge": 0, "lt": 1})
    weight_decay: float = field(default=5e-4, metadata={"ge": 0})
    debias: bool = True  # False: plain CE on un-mixed images (the "w/o debiasing" ablation)
    gamma_robust: float = field(default=1.0, metadata={"ge": 0})
    gamma_debias: float = field(default=1.0, metadata={"ge": 0})
    q: float = field(default=1.2, metadata={"ge": 0})
    resample_rho: float = field(default=0.0, metadata={"ge": 0, "le": 1})
    weight_norm: str = field(default="mean_one", metadata={"choices": ("mean_one", "sum_one")})
    heads: str = field(default="one", metadata={"choices": ("one", "two")})
    robust_form: str = field(default="simsiam", metadata={"choices": ("simsiam", "paper")})
    alpha_granularity: str = field(
        default="iteration", metadata={"choices": ("iteration", "epoch")}
    )
    proj_dim: int = field(default=128, metadata={"ge": 1})
    share_observer_teacher: bool = True
    seed: int = field(default=0, metadata={"ge": 0})


@dataclass(frozen=True)
class RecalibrationConfig:
    """Fair BN recalibration (spec §1.3); `mode: ema` is the "w/o recalibration" ablation."""

    mode: str = field(default="fair", metadata={"choices": ("fair", "ema")})
    variance: str = field(default="mixture", metadata={"choices": ("mixture", "paper")})
    write_buffers: bool = True
    batch_size: int = field(default=500, metadata={"ge": 1})
    # layerwise: layer l's targets measured after layers < l hold their new buffers (consistent
    # with the observer recovery uses); single: one pass, then all buffers written (spec §1.3)
    passes: str = field(default="layerwise", metadata={"choices": ("layerwise", "single")})
    # statistics over at most this many images per class (seeded subset; 0 = every image)
    max_images_per_class: int = field(default=0, metadata={"ge": 0})


@dataclass(frozen=True)
class InitConfig:
    """Confidence-guided multi-round initialisation (spec §1.4); `random` is the ablation;
    `herding`: whole images chosen by herding on the observer's features (not in the paper)."""

    mode: str = field(
        default="confidence", metadata={"choices": ("confidence", "random", "herding")}
    )
    max_images_per_class: int = field(default=300, metadata={"ge": 1})
    crops_per_image: int = field(default=5, metadata={"ge": 1})
    crop_scale: tuple[float, float] = (0.5, 1.0)


@dataclass(frozen=True)
class RecoverConfig:
    """Recovery: BN-statistic alignment of the synthetic pixels (spec §1.5); 0 iterations = none."""

    iterations: int = field(default=300, metadata={"ge": 0})
    lr: float = field(default=0.05, metadata={"gt": 0})
    global_weight: float = field(default=1.0, metadata={"ge": 0})
    class_weight: float = field(default=1.0, metadata={"ge": 0})
    ce_weight: float = field(default=0.0, metadata={"ge": 0})
    first_layer_weight: float = field(default=10.0, metadata={"ge": 0})
    crop_scale: tuple[float, float] = (0.5, 1.0)
    flip: bool = True
    batch_ipc: int = field(default=10, metadata={"ge": 1})


@dataclass(frozen=True)
class RelabelConfig:
    """Teacher labels (spec §1.6) and ADSA (§3). Static logits are what the set file stores."""

    adsa: bool = False
    tau_min: float = -1.0
    tau_max: float = 3.0
    tau_step: float = field(default=0.05, metadata={"gt": 0})
    temperature: float = field(default=1.0, metadata={"gt": 0})
    set_lr: float = field(default=0.01, metadata={"gt": 0})
    # κ: stored label = log((1 − κ)·softmax(teacher) + κ·onehot); 0 = the teacher alone
    hard_weight: float = field(default=0.0, metadata={"ge": 0, "le": 1})


@dataclass(frozen=True)
class EDCEvalConfig:
    """UL-LT's own evaluation protocol (spec §1.7): MSE to teacher logits + small CE, AdamW, EMA."""

    enabled: bool = False
    labels: str = field(default="online", metadata={"choices": ("online", "static")})
    model: str = "convnet"
    width: int | None = field(default=None, metadata={"ge": 1})
    epochs: int = field(default=300, metadata={"ge": 1})
    batch_size: int = field(default=50, metadata={"ge": 1})
    lr: float = field(default=1e-3, metadata={"gt": 0})
    weight_decay: float = field(default=0.01, metadata={"ge": 0})
    ce_weight: float = field(default=0.025, metadata={"ge": 0})
    mse_weight: float = field(default=1.0, metadata={"ge": 0})
    ema_decay: float = field(default=0.99, metadata={"ge": 0, "lt": 1})
    crop_scale: tuple[float, float] = (0.5, 1.0)
    cutmix: bool = True
    seeds: int = field(default=3, metadata={"ge": 1})
    first_seed: int = field(default=0, metadata={"ge": 0})


@dataclass(frozen=True)
class UnilevelConfig:
    """UL-LT after the data: experts, recalibration, init, recovery, labels."""

    experts: DebiasExpertConfig = field(default_factory=DebiasExpertConfig)
    recalibration: RecalibrationConfig = field(default_factory=RecalibrationConfig)
    init: InitConfig = field(default_factory=InitConfig)
    recover: RecoverConfig = field(default_factory=RecoverConfig)
    relabel: RelabelConfig = field(default_factory=RelabelConfig)
    edc: EDCEvalConfig = field(default_factory=EDCEvalConfig)
    seed: int = field(default=0, metadata={"ge": 0})
