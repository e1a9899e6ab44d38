"""Emit Watchkeeper events from your services.

``Emitter`` (non-blocking, batching Kafka producer; ``BackgroundEmitter`` runs one on its
own thread for synchronous services), ``InferenceMiddleware`` (ASGI) and
``WsgiInferenceMiddleware`` (WSGI),
``LlmTracker`` (OpenAI-compatible LLM calls), ``RagRecorder`` (retrieval and user
feedback of a RAG service), ``NvmlSampler`` (GPUs), and builders for every event type. Only ``aiokafka`` is required, and only once an emitter starts.
"""

from .asgi import Exchange, InferenceMiddleware
from .background import BackgroundEmitter
from .emitter import Emitter
from .events import EVENT_TYPES, feedback_event, gpu_event, inference_event, llm_event, owner_of, retrieval_event
from .gpu import GpuUnavailable, NvmlSampler, open_nvml
from .llm import LlmTracker, usage_from_response
from .rag import RagRecorder
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
    "RagRecorder",
    "NvmlSampler",
    "feedback_event",
    "gpu_event",
    "inference_event",
    "llm_event",
    "open_nvml",
    "owner_of",
    "retrieval_event",
    "usage_from_response",
    "WsgiInferenceMiddleware",
]
__version__ = "0.1.0"
