from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_BFLOAT16: _ClassVar[DType]

class Reproducibility(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPRODUCIBILITY_UNSPECIFIED: _ClassVar[Reproducibility]
    REPRODUCIBILITY_EXACT: _ClassVar[Reproducibility]
    REPRODUCIBILITY_FAST: _ClassVar[Reproducibility]

class Solver(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOLVER_UNSPECIFIED: _ClassVar[Solver]
    SOLVER_HEUN: _ClassVar[Solver]
    SOLVER_EULER: _ClassVar[Solver]
    SOLVER_DDIM_ETA: _ClassVar[Solver]
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT16: DType
DTYPE_BFLOAT16: DType
REPRODUCIBILITY_UNSPECIFIED: Reproducibility
REPRODUCIBILITY_EXACT: Reproducibility
REPRODUCIBILITY_FAST: Reproducibility
SOLVER_UNSPECIFIED: Solver
SOLVER_HEUN: Solver
SOLVER_EULER: Solver
SOLVER_DDIM_ETA: Solver

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "raw_data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    RAW_DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    raw_data: bytes
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., raw_data: _Optional[bytes] = ...) -> None: ...

class Recipe(_message.Message):
    __slots__ = ("seed", "neighbour", "forward_noise", "denoise", "x_prediction", "put")
    SEED_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOUR_FIELD_NUMBER: _ClassVar[int]
    FORWARD_NOISE_FIELD_NUMBER: _ClassVar[int]
    DENOISE_FIELD_NUMBER: _ClassVar[int]
    X_PREDICTION_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    seed: SeedRecipe
    neighbour: NeighbourRecipe
    forward_noise: ForwardNoiseRecipe
    denoise: DenoiseRecipe
    x_prediction: XPredictionRecipe
    put: PutRecipe
    def __init__(self, seed: _Optional[_Union[SeedRecipe, _Mapping]] = ..., neighbour: _Optional[_Union[NeighbourRecipe, _Mapping]] = ..., forward_noise: _Optional[_Union[ForwardNoiseRecipe, _Mapping]] = ..., denoise: _Optional[_Union[DenoiseRecipe, _Mapping]] = ..., x_prediction: _Optional[_Union[XPredictionRecipe, _Mapping]] = ..., put: _Optional[_Union[PutRecipe, _Mapping]] = ...) -> None: ...

class SeedRecipe(_message.Message):
    __slots__ = ("seed", "shape")
    SEED_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    seed: int
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, seed: _Optional[int] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class NeighbourRecipe(_message.Message):
    __slots__ = ("pivot", "tau", "seed")
    PIVOT_FIELD_NUMBER: _ClassVar[int]
    TAU_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    pivot: Recipe
    tau: float
    seed: int
    def __init__(self, pivot: _Optional[_Union[Recipe, _Mapping]] = ..., tau: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class ForwardNoiseRecipe(_message.Message):
    __slots__ = ("parent", "sigma_from", "sigma_to", "seed")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FROM_FIELD_NUMBER: _ClassVar[int]
    SIGMA_TO_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    parent: Recipe
    sigma_from: float
    sigma_to: float
    seed: int
    def __init__(self, parent: _Optional[_Union[Recipe, _Mapping]] = ..., sigma_from: _Optional[float] = ..., sigma_to: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class DenoiseRecipe(_message.Message):
    __slots__ = ("parent", "model", "condition", "solver", "sigma_from", "sigma_to", "stop_after_steps", "particle", "first_prediction", "batching")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    SOLVER_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FROM_FIELD_NUMBER: _ClassVar[int]
    SIGMA_TO_FIELD_NUMBER: _ClassVar[int]
    STOP_AFTER_STEPS_FIELD_NUMBER: _ClassVar[int]
    PARTICLE_FIELD_NUMBER: _ClassVar[int]
    FIRST_PREDICTION_FIELD_NUMBER: _ClassVar[int]
    BATCHING_FIELD_NUMBER: _ClassVar[int]
    parent: Recipe
    model: str
    condition: Condition
    solver: SolverSettings
    sigma_from: float
    sigma_to: float
    stop_after_steps: int
    particle: int
    first_prediction: MicroBatching
    batching: MicroBatching
    def __init__(self, parent: _Optional[_Union[Recipe, _Mapping]] = ..., model: _Optional[str] = ..., condition: _Optional[_Union[Condition, _Mapping]] = ..., solver: _Optional[_Union[SolverSettings, _Mapping]] = ..., sigma_from: _Optional[float] = ..., sigma_to: _Optional[float] = ..., stop_after_steps: _Optional[int] = ..., particle: _Optional[int] = ..., first_prediction: _Optional[_Union[MicroBatching, _Mapping]] = ..., batching: _Optional[_Union[MicroBatching, _Mapping]] = ...) -> None: ...

class XPredictionRecipe(_message.Message):
    __slots__ = ("parent", "model", "condition", "guidance_scale", "sigma", "batching")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    BATCHING_FIELD_NUMBER: _ClassVar[int]
    parent: Recipe
    model: str
    condition: Condition
    guidance_scale: float
    sigma: float
    batching: MicroBatching
    def __init__(self, parent: _Optional[_Union[Recipe, _Mapping]] = ..., model: _Optional[str] = ..., condition: _Optional[_Union[Condition, _Mapping]] = ..., guidance_scale: _Optional[float] = ..., sigma: _Optional[float] = ..., batching: _Optional[_Union[MicroBatching, _Mapping]] = ...) -> None: ...

class MicroBatching(_message.Message):
    __slots__ = ("reproducibility", "rows")
    REPRODUCIBILITY_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    reproducibility: Reproducibility
    rows: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, reproducibility: _Optional[_Union[Reproducibility, str]] = ..., rows: _Optional[_Iterable[int]] = ...) -> None: ...

class PutRecipe(_message.Message):
    __slots__ = ("sha256",)
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    def __init__(self, sha256: _Optional[str] = ...) -> None: ...

class TensorInfo(_message.Message):
    __slots__ = ("handle", "shape", "dtype", "recipe")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    handle: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    recipe: Recipe
    def __init__(self, handle: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ..., recipe: _Optional[_Union[Recipe, _Mapping]] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("class_label", "prompt", "unconditional")
    CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    UNCONDITIONAL_FIELD_NUMBER: _ClassVar[int]
    class_label: int
    prompt: str
    unconditional: bool
    def __init__(self, class_label: _Optional[int] = ..., prompt: _Optional[str] = ..., unconditional: _Optional[bool] = ...) -> None: ...

class SolverSettings(_message.Message):
    __slots__ = ("solver", "steps", "guidance_scale", "eta", "noise_seed")
    SOLVER_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    NOISE_SEED_FIELD_NUMBER: _ClassVar[int]
    solver: Solver
    steps: int
    guidance_scale: float
    eta: float
    noise_seed: int
    def __init__(self, solver: _Optional[_Union[Solver, str]] = ..., steps: _Optional[int] = ..., guidance_scale: _Optional[float] = ..., eta: _Optional[float] = ..., noise_seed: _Optional[int] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "family", "sample_shape", "num_classes", "accepts_prompt", "default_solver", "checkpoint", "num_parameters", "guidance_embedded", "micro_batch")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SHAPE_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_PROMPT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SOLVER_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    NUM_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_EMBEDDED_FIELD_NUMBER: _ClassVar[int]
    MICRO_BATCH_FIELD_NUMBER: _ClassVar[int]
    name: str
    family: str
    sample_shape: _containers.RepeatedScalarFieldContainer[int]
    num_classes: int
    accepts_prompt: bool
    default_solver: SolverSettings
    checkpoint: str
    num_parameters: int
    guidance_embedded: bool
    micro_batch: int
    def __init__(self, name: _Optional[str] = ..., family: _Optional[str] = ..., sample_shape: _Optional[_Iterable[int]] = ..., num_classes: _Optional[int] = ..., accepts_prompt: _Optional[bool] = ..., default_solver: _Optional[_Union[SolverSettings, _Mapping]] = ..., checkpoint: _Optional[str] = ..., num_parameters: _Optional[int] = ..., guidance_embedded: _Optional[bool] = ..., micro_batch: _Optional[int] = ...) -> None: ...

class VerifierInfo(_message.Message):
    __slots__ = ("name", "description", "needs_class_label", "needs_prompt", "needs_x_prediction_at", "held_out", "models")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    NEEDS_CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
    NEEDS_PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEEDS_X_PREDICTION_AT_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    needs_class_label: bool
    needs_prompt: bool
    needs_x_prediction_at: float
    held_out: bool
    models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., needs_class_label: _Optional[bool] = ..., needs_prompt: _Optional[bool] = ..., needs_x_prediction_at: _Optional[float] = ..., held_out: _Optional[bool] = ..., models: _Optional[_Iterable[str]] = ...) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ("models", "verifiers", "device", "compute_dtype", "max_batch", "max_request_samples", "memory_cap_bytes", "memory_used_bytes", "handle_ttl_seconds", "versions", "max_message_bytes", "queued_rows", "reproducibility")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODELS_FIELD_NUMBER: _ClassVar[int]
    VERIFIERS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_DTYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_CAP_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    HANDLE_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUEUED_ROWS_FIELD_NUMBER: _ClassVar[int]
    REPRODUCIBILITY_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    verifiers: _containers.RepeatedCompositeFieldContainer[VerifierInfo]
    device: str
    compute_dtype: DType
    max_batch: int
    max_request_samples: int
    memory_cap_bytes: int
    memory_used_bytes: int
    handle_ttl_seconds: int
    versions: _containers.ScalarMap[str, str]
    max_message_bytes: int
    queued_rows: int
    reproducibility: Reproducibility
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., verifiers: _Optional[_Iterable[_Union[VerifierInfo, _Mapping]]] = ..., device: _Optional[str] = ..., compute_dtype: _Optional[_Union[DType, str]] = ..., max_batch: _Optional[int] = ..., max_request_samples: _Optional[int] = ..., memory_cap_bytes: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ..., handle_ttl_seconds: _Optional[int] = ..., versions: _Optional[_Mapping[str, str]] = ..., max_message_bytes: _Optional[int] = ..., queued_rows: _Optional[int] = ..., reproducibility: _Optional[_Union[Reproducibility, str]] = ...) -> None: ...

class InitialNoisesRequest(_message.Message):
    __slots__ = ("namespace", "model", "seeds")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    model: str
    seeds: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, namespace: _Optional[str] = ..., model: _Optional[str] = ..., seeds: _Optional[_Iterable[int]] = ...) -> None: ...

class ZeroOrderNeighboursRequest(_message.Message):
    __slots__ = ("namespace", "pivot", "tau", "seeds")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PIVOT_FIELD_NUMBER: _ClassVar[int]
    TAU_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pivot: str
    tau: float
    seeds: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, namespace: _Optional[str] = ..., pivot: _Optional[str] = ..., tau: _Optional[float] = ..., seeds: _Optional[_Iterable[int]] = ...) -> None: ...

class TensorsResponse(_message.Message):
    __slots__ = ("tensors",)
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    def __init__(self, tensors: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ...) -> None: ...

class DenoiseRequest(_message.Message):
    __slots__ = ("namespace", "model", "handles", "conditions", "solver", "sigma_from", "sigma_to", "capture_sigmas", "release_inputs", "first_predictions")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    SOLVER_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FROM_FIELD_NUMBER: _ClassVar[int]
    SIGMA_TO_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_SIGMAS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_INPUTS_FIELD_NUMBER: _ClassVar[int]
    FIRST_PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    model: str
    handles: _containers.RepeatedScalarFieldContainer[str]
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    solver: SolverSettings
    sigma_from: float
    sigma_to: float
    capture_sigmas: _containers.RepeatedScalarFieldContainer[float]
    release_inputs: bool
    first_predictions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., model: _Optional[str] = ..., handles: _Optional[_Iterable[str]] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., solver: _Optional[_Union[SolverSettings, _Mapping]] = ..., sigma_from: _Optional[float] = ..., sigma_to: _Optional[float] = ..., capture_sigmas: _Optional[_Iterable[float]] = ..., release_inputs: _Optional[bool] = ..., first_predictions: _Optional[_Iterable[str]] = ...) -> None: ...

class Capture(_message.Message):
    __slots__ = ("requested_sigma", "sigma", "tensors")
    REQUESTED_SIGMA_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    requested_sigma: float
    sigma: float
    tensors: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    def __init__(self, requested_sigma: _Optional[float] = ..., sigma: _Optional[float] = ..., tensors: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ...) -> None: ...

class DenoiseResponse(_message.Message):
    __slots__ = ("tensors", "nfes", "nfes_per_sample", "captures", "wall_seconds", "model_seconds")
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    NFES_FIELD_NUMBER: _ClassVar[int]
    NFES_PER_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    CAPTURES_FIELD_NUMBER: _ClassVar[int]
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    nfes: int
    nfes_per_sample: int
    captures: _containers.RepeatedCompositeFieldContainer[Capture]
    wall_seconds: float
    model_seconds: float
    def __init__(self, tensors: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., nfes: _Optional[int] = ..., nfes_per_sample: _Optional[int] = ..., captures: _Optional[_Iterable[_Union[Capture, _Mapping]]] = ..., wall_seconds: _Optional[float] = ..., model_seconds: _Optional[float] = ...) -> None: ...

class ForwardNoiseRequest(_message.Message):
    __slots__ = ("namespace", "handles", "sigma_from", "sigma_to", "seeds")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FROM_FIELD_NUMBER: _ClassVar[int]
    SIGMA_TO_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    handles: _containers.RepeatedScalarFieldContainer[str]
    sigma_from: float
    sigma_to: float
    seeds: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, namespace: _Optional[str] = ..., handles: _Optional[_Iterable[str]] = ..., sigma_from: _Optional[float] = ..., sigma_to: _Optional[float] = ..., seeds: _Optional[_Iterable[int]] = ...) -> None: ...

class XPredictionRequest(_message.Message):
    __slots__ = ("namespace", "model", "handles", "conditions", "guidance_scale", "sigma")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    model: str
    handles: _containers.RepeatedScalarFieldContainer[str]
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    guidance_scale: float
    sigma: float
    def __init__(self, namespace: _Optional[str] = ..., model: _Optional[str] = ..., handles: _Optional[_Iterable[str]] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., guidance_scale: _Optional[float] = ..., sigma: _Optional[float] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("namespace", "model", "handles", "verifiers", "conditions", "x_prediction_handles")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    VERIFIERS_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    X_PREDICTION_HANDLES_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    model: str
    handles: _containers.RepeatedScalarFieldContainer[str]
    verifiers: _containers.RepeatedScalarFieldContainer[str]
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    x_prediction_handles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., model: _Optional[str] = ..., handles: _Optional[_Iterable[str]] = ..., verifiers: _Optional[_Iterable[str]] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., x_prediction_handles: _Optional[_Iterable[str]] = ...) -> None: ...

class VerifierScores(_message.Message):
    __slots__ = ("verifier", "scores")
    VERIFIER_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    verifier: str
    scores: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, verifier: _Optional[str] = ..., scores: _Optional[_Iterable[float]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("results", "verifier_calls", "wall_seconds")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    VERIFIER_CALLS_FIELD_NUMBER: _ClassVar[int]
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[VerifierScores]
    verifier_calls: int
    wall_seconds: float
    def __init__(self, results: _Optional[_Iterable[_Union[VerifierScores, _Mapping]]] = ..., verifier_calls: _Optional[int] = ..., wall_seconds: _Optional[float] = ...) -> None: ...

class DecodeRequest(_message.Message):
    __slots__ = ("namespace", "model", "handles", "upscale")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    UPSCALE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    model: str
    handles: _containers.RepeatedScalarFieldContainer[str]
    upscale: int
    def __init__(self, namespace: _Optional[str] = ..., model: _Optional[str] = ..., handles: _Optional[_Iterable[str]] = ..., upscale: _Optional[int] = ...) -> None: ...

class DecodeResponse(_message.Message):
    __slots__ = ("png",)
    PNG_FIELD_NUMBER: _ClassVar[int]
    png: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, png: _Optional[_Iterable[bytes]] = ...) -> None: ...

class MaterializeRequest(_message.Message):
    __slots__ = ("namespace", "recipes")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RECIPES_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    recipes: _containers.RepeatedCompositeFieldContainer[Recipe]
    def __init__(self, namespace: _Optional[str] = ..., recipes: _Optional[_Iterable[_Union[Recipe, _Mapping]]] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("namespace", "handles")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    handles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., handles: _Optional[_Iterable[str]] = ...) -> None: ...

class FetchResponse(_message.Message):
    __slots__ = ("tensors",)
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, tensors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("namespace", "tensors")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    tensors: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, namespace: _Optional[str] = ..., tensors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("namespace", "handles", "all")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    handles: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    def __init__(self, namespace: _Optional[str] = ..., handles: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("released", "memory_used_bytes")
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    released: int
    memory_used_bytes: int
    def __init__(self, released: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ...) -> None: ...

class RunOp(_message.Message):
    __slots__ = ("initial_noises", "neighbours", "denoise", "forward_noise", "x_prediction", "score", "release", "decode")
    INITIAL_NOISES_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURS_FIELD_NUMBER: _ClassVar[int]
    DENOISE_FIELD_NUMBER: _ClassVar[int]
    FORWARD_NOISE_FIELD_NUMBER: _ClassVar[int]
    X_PREDICTION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    DECODE_FIELD_NUMBER: _ClassVar[int]
    initial_noises: InitialNoisesRequest
    neighbours: ZeroOrderNeighboursRequest
    denoise: DenoiseRequest
    forward_noise: ForwardNoiseRequest
    x_prediction: XPredictionRequest
    score: ScoreRequest
    release: ReleaseRequest
    decode: DecodeRequest
    def __init__(self, initial_noises: _Optional[_Union[InitialNoisesRequest, _Mapping]] = ..., neighbours: _Optional[_Union[ZeroOrderNeighboursRequest, _Mapping]] = ..., denoise: _Optional[_Union[DenoiseRequest, _Mapping]] = ..., forward_noise: _Optional[_Union[ForwardNoiseRequest, _Mapping]] = ..., x_prediction: _Optional[_Union[XPredictionRequest, _Mapping]] = ..., score: _Optional[_Union[ScoreRequest, _Mapping]] = ..., release: _Optional[_Union[ReleaseRequest, _Mapping]] = ..., decode: _Optional[_Union[DecodeRequest, _Mapping]] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("ops",)
    OPS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[RunOp]
    def __init__(self, ops: _Optional[_Iterable[_Union[RunOp, _Mapping]]] = ...) -> None: ...

class RunResult(_message.Message):
    __slots__ = ("tensors", "denoise", "score", "release", "decode")
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    DENOISE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    DECODE_FIELD_NUMBER: _ClassVar[int]
    tensors: TensorsResponse
    denoise: DenoiseResponse
    score: ScoreResponse
    release: ReleaseResponse
    decode: DecodeResponse
    def __init__(self, tensors: _Optional[_Union[TensorsResponse, _Mapping]] = ..., denoise: _Optional[_Union[DenoiseResponse, _Mapping]] = ..., score: _Optional[_Union[ScoreResponse, _Mapping]] = ..., release: _Optional[_Union[ReleaseResponse, _Mapping]] = ..., decode: _Optional[_Union[DecodeResponse, _Mapping]] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RunResult]
    def __init__(self, results: _Optional[_Iterable[_Union[RunResult, _Mapping]]] = ...) -> None: ...
