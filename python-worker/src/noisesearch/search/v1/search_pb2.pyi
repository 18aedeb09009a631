from noisesearch.worker.v1 import worker_pb2 as _worker_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FkPotential(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FK_POTENTIAL_UNSPECIFIED: _ClassVar[FkPotential]
    FK_POTENTIAL_MAX: _ClassVar[FkPotential]
    FK_POTENTIAL_DIFFERENCE: _ClassVar[FkPotential]
    FK_POTENTIAL_SUM: _ClassVar[FkPotential]

class Ensemble(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENSEMBLE_UNSPECIFIED: _ClassVar[Ensemble]
    ENSEMBLE_RANK_AVERAGE: _ClassVar[Ensemble]
    ENSEMBLE_ZSCORE_SUM: _ClassVar[Ensemble]
    ENSEMBLE_MINMAX_SUM: _ClassVar[Ensemble]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
FK_POTENTIAL_UNSPECIFIED: FkPotential
FK_POTENTIAL_MAX: FkPotential
FK_POTENTIAL_DIFFERENCE: FkPotential
FK_POTENTIAL_SUM: FkPotential
ENSEMBLE_UNSPECIFIED: Ensemble
ENSEMBLE_RANK_AVERAGE: Ensemble
ENSEMBLE_ZSCORE_SUM: Ensemble
ENSEMBLE_MINMAX_SUM: Ensemble
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class SearchRequest(_message.Message):
    __slots__ = ("model", "condition", "random", "zero_order", "paths", "successive_halving", "feynman_kac", "rollover_budget", "verifiers", "ensemble", "select_with_held_out", "budget_nfes", "shrink_to_fit", "search_solver", "final_solver", "seed", "num_outputs", "client_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    RANDOM_FIELD_NUMBER: _ClassVar[int]
    ZERO_ORDER_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    SUCCESSIVE_HALVING_FIELD_NUMBER: _ClassVar[int]
    FEYNMAN_KAC_FIELD_NUMBER: _ClassVar[int]
    ROLLOVER_BUDGET_FIELD_NUMBER: _ClassVar[int]
    VERIFIERS_FIELD_NUMBER: _ClassVar[int]
    ENSEMBLE_FIELD_NUMBER: _ClassVar[int]
    SELECT_WITH_HELD_OUT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_NFES_FIELD_NUMBER: _ClassVar[int]
    SHRINK_TO_FIT_FIELD_NUMBER: _ClassVar[int]
    SEARCH_SOLVER_FIELD_NUMBER: _ClassVar[int]
    FINAL_SOLVER_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    NUM_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    RETURN_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    condition: _worker_pb2.Condition
    random: RandomSearch
    zero_order: ZeroOrderSearch
    paths: PathsSearch
    successive_halving: SuccessiveHalvingSearch
    feynman_kac: FeynmanKacSearch
    rollover_budget: RolloverBudgetSearch
    verifiers: _containers.RepeatedCompositeFieldContainer[VerifierWeight]
    ensemble: Ensemble
    select_with_held_out: bool
    budget_nfes: int
    shrink_to_fit: bool
    search_solver: _worker_pb2.SolverSettings
    final_solver: _worker_pb2.SolverSettings
    seed: int
    num_outputs: int
    client_id: str
    def __init__(self, model: _Optional[str] = ..., condition: _Optional[_Union[_worker_pb2.Condition, _Mapping]] = ..., random: _Optional[_Union[RandomSearch, _Mapping]] = ..., zero_order: _Optional[_Union[ZeroOrderSearch, _Mapping]] = ..., paths: _Optional[_Union[PathsSearch, _Mapping]] = ..., successive_halving: _Optional[_Union[SuccessiveHalvingSearch, _Mapping]] = ..., feynman_kac: _Optional[_Union[FeynmanKacSearch, _Mapping]] = ..., rollover_budget: _Optional[_Union[RolloverBudgetSearch, _Mapping]] = ..., verifiers: _Optional[_Iterable[_Union[VerifierWeight, _Mapping]]] = ..., ensemble: _Optional[_Union[Ensemble, str]] = ..., select_with_held_out: _Optional[bool] = ..., budget_nfes: _Optional[int] = ..., shrink_to_fit: _Optional[bool] = ..., search_solver: _Optional[_Union[_worker_pb2.SolverSettings, _Mapping]] = ..., final_solver: _Optional[_Union[_worker_pb2.SolverSettings, _Mapping]] = ..., seed: _Optional[int] = ..., num_outputs: _Optional[int] = ..., client_id: _Optional[str] = ..., **kwargs) -> None: ...

class RandomSearch(_message.Message):
    __slots__ = ("n",)
    N_FIELD_NUMBER: _ClassVar[int]
    n: int
    def __init__(self, n: _Optional[int] = ...) -> None: ...

class ZeroOrderSearch(_message.Message):
    __slots__ = ("n", "k", "tau", "accept_non_improving", "max_rejections")
    N_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    TAU_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_NON_IMPROVING_FIELD_NUMBER: _ClassVar[int]
    MAX_REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    n: int
    k: int
    tau: float
    accept_non_improving: bool
    max_rejections: int
    def __init__(self, n: _Optional[int] = ..., k: _Optional[int] = ..., tau: _Optional[float] = ..., accept_non_improving: _Optional[bool] = ..., max_rejections: _Optional[int] = ...) -> None: ...

class PathsSearch(_message.Message):
    __slots__ = ("n", "m", "sigma_start", "delta_forward", "delta_backward", "backward_steps")
    N_FIELD_NUMBER: _ClassVar[int]
    M_FIELD_NUMBER: _ClassVar[int]
    SIGMA_START_FIELD_NUMBER: _ClassVar[int]
    DELTA_FORWARD_FIELD_NUMBER: _ClassVar[int]
    DELTA_BACKWARD_FIELD_NUMBER: _ClassVar[int]
    BACKWARD_STEPS_FIELD_NUMBER: _ClassVar[int]
    n: int
    m: int
    sigma_start: float
    delta_forward: float
    delta_backward: float
    backward_steps: int
    def __init__(self, n: _Optional[int] = ..., m: _Optional[int] = ..., sigma_start: _Optional[float] = ..., delta_forward: _Optional[float] = ..., delta_backward: _Optional[float] = ..., backward_steps: _Optional[int] = ...) -> None: ...

class SuccessiveHalvingSearch(_message.Message):
    __slots__ = ("n", "rungs", "reduction", "free_lookahead")
    N_FIELD_NUMBER: _ClassVar[int]
    RUNGS_FIELD_NUMBER: _ClassVar[int]
    REDUCTION_FIELD_NUMBER: _ClassVar[int]
    FREE_LOOKAHEAD_FIELD_NUMBER: _ClassVar[int]
    n: int
    rungs: _containers.RepeatedScalarFieldContainer[float]
    reduction: float
    free_lookahead: bool
    def __init__(self, n: _Optional[int] = ..., rungs: _Optional[_Iterable[float]] = ..., reduction: _Optional[float] = ..., free_lookahead: _Optional[bool] = ...) -> None: ...

class FeynmanKacSearch(_message.Message):
    __slots__ = ("k", "potential", "resample_every", "ess_threshold", "eta")
    K_FIELD_NUMBER: _ClassVar[int]
    POTENTIAL_FIELD_NUMBER: _ClassVar[int]
    LAMBDA_FIELD_NUMBER: _ClassVar[int]
    RESAMPLE_EVERY_FIELD_NUMBER: _ClassVar[int]
    ESS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    k: int
    potential: FkPotential
    resample_every: int
    ess_threshold: float
    eta: float
    def __init__(self, k: _Optional[int] = ..., potential: _Optional[_Union[FkPotential, str]] = ..., resample_every: _Optional[int] = ..., ess_threshold: _Optional[float] = ..., eta: _Optional[float] = ..., **kwargs) -> None: ...

class RolloverBudgetSearch(_message.Message):
    __slots__ = ("nfes", "proposals_per_call", "eta", "initial_noises")
    NFES_FIELD_NUMBER: _ClassVar[int]
    PROPOSALS_PER_CALL_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    INITIAL_NOISES_FIELD_NUMBER: _ClassVar[int]
    nfes: int
    proposals_per_call: int
    eta: float
    initial_noises: int
    def __init__(self, nfes: _Optional[int] = ..., proposals_per_call: _Optional[int] = ..., eta: _Optional[float] = ..., initial_noises: _Optional[int] = ...) -> None: ...

class VerifierWeight(_message.Message):
    __slots__ = ("name", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: float
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class ReturnOptions(_message.Message):
    __slots__ = ("png", "raw_tensor", "candidate_scores", "png_upscale")
    PNG_FIELD_NUMBER: _ClassVar[int]
    RAW_TENSOR_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_SCORES_FIELD_NUMBER: _ClassVar[int]
    PNG_UPSCALE_FIELD_NUMBER: _ClassVar[int]
    png: bool
    raw_tensor: bool
    candidate_scores: bool
    png_upscale: int
    def __init__(self, png: _Optional[bool] = ..., raw_tensor: _Optional[bool] = ..., candidate_scores: _Optional[bool] = ..., png_upscale: _Optional[int] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("algorithm", "n", "k", "m", "search_nfes", "final_nfes", "total_nfes", "budget_nfes", "rounds", "nfes_per_candidate", "shrunk", "shrunk_axis", "requested_axis_value", "final_reuses_search", "selection_verifiers", "reported_verifiers", "request", "search_nfes_upper_bound", "levels")
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    M_FIELD_NUMBER: _ClassVar[int]
    SEARCH_NFES_FIELD_NUMBER: _ClassVar[int]
    FINAL_NFES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_NFES_FIELD_NUMBER: _ClassVar[int]
    BUDGET_NFES_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    NFES_PER_CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    SHRUNK_FIELD_NUMBER: _ClassVar[int]
    SHRUNK_AXIS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AXIS_VALUE_FIELD_NUMBER: _ClassVar[int]
    FINAL_REUSES_SEARCH_FIELD_NUMBER: _ClassVar[int]
    SELECTION_VERIFIERS_FIELD_NUMBER: _ClassVar[int]
    REPORTED_VERIFIERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    SEARCH_NFES_UPPER_BOUND_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    algorithm: str
    n: int
    k: int
    m: int
    search_nfes: int
    final_nfes: int
    total_nfes: int
    budget_nfes: int
    rounds: int
    nfes_per_candidate: int
    shrunk: bool
    shrunk_axis: str
    requested_axis_value: int
    final_reuses_search: bool
    selection_verifiers: _containers.RepeatedScalarFieldContainer[str]
    reported_verifiers: _containers.RepeatedScalarFieldContainer[str]
    request: SearchRequest
    search_nfes_upper_bound: bool
    levels: PlanLevels
    def __init__(self, algorithm: _Optional[str] = ..., n: _Optional[int] = ..., k: _Optional[int] = ..., m: _Optional[int] = ..., search_nfes: _Optional[int] = ..., final_nfes: _Optional[int] = ..., total_nfes: _Optional[int] = ..., budget_nfes: _Optional[int] = ..., rounds: _Optional[int] = ..., nfes_per_candidate: _Optional[int] = ..., shrunk: _Optional[bool] = ..., shrunk_axis: _Optional[str] = ..., requested_axis_value: _Optional[int] = ..., final_reuses_search: _Optional[bool] = ..., selection_verifiers: _Optional[_Iterable[str]] = ..., reported_verifiers: _Optional[_Iterable[str]] = ..., request: _Optional[_Union[SearchRequest, _Mapping]] = ..., search_nfes_upper_bound: _Optional[bool] = ..., levels: _Optional[_Union[PlanLevels, _Mapping]] = ...) -> None: ...

class PlanLevels(_message.Message):
    __slots__ = ("sigmas", "sizes")
    SIGMAS_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    sigmas: _containers.RepeatedScalarFieldContainer[float]
    sizes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, sigmas: _Optional[_Iterable[float]] = ..., sizes: _Optional[_Iterable[int]] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("id", "round", "scores", "ensemble_score", "kept", "recipe")
    ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    ENSEMBLE_SCORE_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    round: int
    scores: _containers.RepeatedCompositeFieldContainer[VerifierScore]
    ensemble_score: float
    kept: bool
    recipe: _worker_pb2.Recipe
    def __init__(self, id: _Optional[str] = ..., round: _Optional[int] = ..., scores: _Optional[_Iterable[_Union[VerifierScore, _Mapping]]] = ..., ensemble_score: _Optional[float] = ..., kept: _Optional[bool] = ..., recipe: _Optional[_Union[_worker_pb2.Recipe, _Mapping]] = ...) -> None: ...

class VerifierScore(_message.Message):
    __slots__ = ("verifier", "score", "held_out")
    VERIFIER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_FIELD_NUMBER: _ClassVar[int]
    verifier: str
    score: float
    held_out: bool
    def __init__(self, verifier: _Optional[str] = ..., score: _Optional[float] = ..., held_out: _Optional[bool] = ...) -> None: ...

class Round(_message.Message):
    __slots__ = ("round", "nfes_spent", "sigma", "best_scores", "kept", "candidates", "note", "verifier_calls", "verifier_seconds", "ess", "resampled", "step_share_nfes", "proposals")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NFES_SPENT_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    BEST_SCORES_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    VERIFIER_CALLS_FIELD_NUMBER: _ClassVar[int]
    VERIFIER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ESS_FIELD_NUMBER: _ClassVar[int]
    RESAMPLED_FIELD_NUMBER: _ClassVar[int]
    STEP_SHARE_NFES_FIELD_NUMBER: _ClassVar[int]
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    round: int
    nfes_spent: int
    sigma: float
    best_scores: _containers.RepeatedCompositeFieldContainer[VerifierScore]
    kept: _containers.RepeatedScalarFieldContainer[str]
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    note: str
    verifier_calls: int
    verifier_seconds: float
    ess: float
    resampled: bool
    step_share_nfes: int
    proposals: int
    def __init__(self, round: _Optional[int] = ..., nfes_spent: _Optional[int] = ..., sigma: _Optional[float] = ..., best_scores: _Optional[_Iterable[_Union[VerifierScore, _Mapping]]] = ..., kept: _Optional[_Iterable[str]] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., note: _Optional[str] = ..., verifier_calls: _Optional[int] = ..., verifier_seconds: _Optional[float] = ..., ess: _Optional[float] = ..., resampled: _Optional[bool] = ..., step_share_nfes: _Optional[int] = ..., proposals: _Optional[int] = ...) -> None: ...

class Output(_message.Message):
    __slots__ = ("rank", "png", "tensor", "recipe", "search_recipe", "scores", "candidate_id")
    RANK_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    SEARCH_RECIPE_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    rank: int
    png: bytes
    tensor: _worker_pb2.Tensor
    recipe: _worker_pb2.Recipe
    search_recipe: _worker_pb2.Recipe
    scores: _containers.RepeatedCompositeFieldContainer[VerifierScore]
    candidate_id: str
    def __init__(self, rank: _Optional[int] = ..., png: _Optional[bytes] = ..., tensor: _Optional[_Union[_worker_pb2.Tensor, _Mapping]] = ..., recipe: _Optional[_Union[_worker_pb2.Recipe, _Mapping]] = ..., search_recipe: _Optional[_Union[_worker_pb2.Recipe, _Mapping]] = ..., scores: _Optional[_Iterable[_Union[VerifierScore, _Mapping]]] = ..., candidate_id: _Optional[str] = ...) -> None: ...

class Accounting(_message.Message):
    __slots__ = ("search_nfes", "final_nfes", "total_nfes", "verifier_calls", "planned_search_nfes", "budget_nfes", "worker_calls", "recovery_nfes", "verifier_seconds", "unspent_nfes")
    SEARCH_NFES_FIELD_NUMBER: _ClassVar[int]
    FINAL_NFES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_NFES_FIELD_NUMBER: _ClassVar[int]
    VERIFIER_CALLS_FIELD_NUMBER: _ClassVar[int]
    PLANNED_SEARCH_NFES_FIELD_NUMBER: _ClassVar[int]
    BUDGET_NFES_FIELD_NUMBER: _ClassVar[int]
    WORKER_CALLS_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_NFES_FIELD_NUMBER: _ClassVar[int]
    VERIFIER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    UNSPENT_NFES_FIELD_NUMBER: _ClassVar[int]
    search_nfes: int
    final_nfes: int
    total_nfes: int
    verifier_calls: int
    planned_search_nfes: int
    budget_nfes: int
    worker_calls: int
    recovery_nfes: int
    verifier_seconds: float
    unspent_nfes: int
    def __init__(self, search_nfes: _Optional[int] = ..., final_nfes: _Optional[int] = ..., total_nfes: _Optional[int] = ..., verifier_calls: _Optional[int] = ..., planned_search_nfes: _Optional[int] = ..., budget_nfes: _Optional[int] = ..., worker_calls: _Optional[int] = ..., recovery_nfes: _Optional[int] = ..., verifier_seconds: _Optional[float] = ..., unspent_nfes: _Optional[int] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("outputs", "accounting", "wall_seconds", "candidates", "plan")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTING_FIELD_NUMBER: _ClassVar[int]
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[Output]
    accounting: Accounting
    wall_seconds: float
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    plan: Plan
    def __init__(self, outputs: _Optional[_Iterable[_Union[Output, _Mapping]]] = ..., accounting: _Optional[_Union[Accounting, _Mapping]] = ..., wall_seconds: _Optional[float] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class SearchEvent(_message.Message):
    __slots__ = ("job_id", "plan", "round", "result")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    plan: Plan
    round: Round
    result: Result
    def __init__(self, job_id: _Optional[str] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., round: _Optional[_Union[Round, _Mapping]] = ..., result: _Optional[_Union[Result, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "state", "request", "plan", "rounds_done", "nfes_spent", "result", "error", "created_at", "finished_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_DONE_FIELD_NUMBER: _ClassVar[int]
    NFES_SPENT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: JobState
    request: SearchRequest
    plan: Plan
    rounds_done: int
    nfes_spent: int
    result: Result
    error: str
    created_at: str
    finished_at: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., request: _Optional[_Union[SearchRequest, _Mapping]] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., rounds_done: _Optional[int] = ..., nfes_spent: _Optional[int] = ..., result: _Optional[_Union[Result, _Mapping]] = ..., error: _Optional[str] = ..., created_at: _Optional[str] = ..., finished_at: _Optional[str] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("state", "limit")
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    limit: int
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...
