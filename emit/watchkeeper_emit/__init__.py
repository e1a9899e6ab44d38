"""Emit Watchkeeper events from your services.

``Emitter`` (non-blocking, batching Kafka producer; ``BackgroundEmitter`` runs one on its
own thread for synchronous services), ``InferenceMiddleware`` (ASGI) and
``WsgiInferenceMiddleware`` (WSGI),
``LlmTracker`` (OpenAI-compatible LLM calls), ``NvmlSampler`` (GPUs), and builders for
the three event types. Only ``aiokafka`` is required, and only once an emitter starts.
"""

from .asgi import Exchange, InferenceMiddleware
from .background import BackgroundEmitter
from .emitter import Emitter
from .events import EVENT_TYPES, gpu_event, inference_event, llm_event, owner_of
from .gpu import GpuUnavailable, NvmlSampler, open_nvml
from .llm import LlmTracker, usage_from_response
from .recorder import InferenceRecorder
from .wsgi import WsgiInferenceMiddleware

__all__ = [
    "BackgroundEmitter",
    "EVENT_TYPES",
    "Emitter",
    "Exchange",
    "GpuUnavailable",
    "InferenceMiddleware",
    "InferenceRecorder",
    "LlmTracker",
    "NvmlSampler",
    "gpu_event",
    "inference_event",
    "llm_event",
    "open_nvml",
    "owner_of",
    "usage_from_response",
    "WsgiInferenceMiddleware",
]
__version__ = "0.1.0"
