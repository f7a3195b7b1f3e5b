"""The translation engine: English in, Japanese text pieces out as they are decoded, behind a
two-method Protocol so the node never sees llama.cpp.

`LlamaTranslator` drives `llama_cpp.Llama` directly: the prompt is rendered with the model's own
chat template (tokenizer.chat_template from the GGUF), decoding is greedy (a retried sentence
says the same words), and every prompt starts with the same system prompt, whose KV state is
computed once at load and then reused through llama-cpp-python's prefix matching (the prompt of
each sentence shares its first tokens with what is already in the cache, so only the rest is
evaluated; `last_stats` counts both). llama.cpp's own logging is silenced; its failures surface as
the EngineError subclasses of nodes/translate/errors.py.

Reasoning models never think here (a thought costs latency and must never be spoken): a template
with Qwen3's `enable_thinking` switch is rendered with it false (its generation prompt then ends
with an empty <think></think> block); a template that knows <think> but has no switch gets Qwen3's
soft switch `/no_think` at the end of the system prompt; and whatever the model still writes
between <think> and </think> is taken out of the decoded text (ja_text.ThinkFilter), also when
the template itself opens the block.
"""

from __future__ import annotations

import codecs
import ctypes
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bus.errors import ModelLoadError
from nodes.translate.engine import Translator
from nodes.translate.errors import ContextOverflow, InferenceError
from nodes.translate.ja_text import THINK_CLOSE, THINK_OPEN, ThinkFilter
from nodes.translate.llama.cpu_guard import extra_buffers, use_extra_buffers

if TYPE_CHECKING:
    import llama_cpp

SYSTEM_PROMPT = (
    "You are the voice of a software engineer who is reading a coding assistant's English messages "
    "aloud to a Japanese colleague. Translate each English message the user sends into natural, "
    "spoken Japanese (polite です/ます style), the way an engineer would say it out loud.\n"
    "Rules:\n"
    "- Output only the Japanese translation, on one line.\n"
    "- No quotation marks, no romaji, no notes, no explanations, no English commentary.\n"
    "- Keep every placeholder such as ⟦0⟧ exactly as written, once, where it belongs in the "
    "sentence; it stands for a name, path, number or piece of code.\n"
    "- Keep technical terms consistent with your earlier translations."
)
# Brief mode: a whole answer of a coding assistant, one sentence a line, said as its gist.
BRIEF_PREFIX = (
    "次の英語は、コーディングアシスタントの回答です(一文ずつ改行)。聞いて分かるように、要点を"
    "日本語の1〜3文で要約してください。コード、識別子、数値、ファイル名、バージョンはそのまま残し、"
    "コードは読み上げないでください。要約だけを書いてください。\n\n"
)
# A second try after an answer with no Japanese in it: no context, and the request spelled out.
STRICT_PREFIX = "次の英文を自然な日本語に翻訳してください。訳文だけを書いてください。\n\n"
NO_THINK = "\n/no_think"  # Qwen3's soft switch, for a thinking template without enable_thinking
SPLIT_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


@dataclass(frozen=True)
class LlamaSettings:
    model: Path
    n_ctx: int = 4096
    n_threads: int | None = None  # None: llama.cpp's default
    n_gpu_layers: int | None = None  # None: every layer when llama.cpp has a GPU backend, else 0
    max_tokens: int = 256  # a hard cap on the tokens decoded for one sentence
    cpu_extra_buffers: str | bool = (
        "auto"  # llama.cpp repacking/AMX on the CPU (nodes/translate/llama/cpu_guard.py)
    )
    seed: int = 0
    reuse_prefix: bool = True  # False evaluates every prompt from scratch (for measuring)
    system_prompt: str = SYSTEM_PROMPT


@dataclass
class TranslationStats:
    """Token counts and times of the last translation, measured on the real Llama."""

    prompt_tokens: int = 0  # the whole prompt
    evaluated_tokens: int = 0  # of those, what llama.cpp evaluated (the rest came from the cache)
    generated_tokens: int = 0
    context_pairs: int = 0  # earlier pairs that fit in the prompt
    thought_chars: int = 0  # characters the model wrote between <think> and </think> (not passed on)
    prefill_ms: float = 0.0
    decode_ms: float = 0.0

    @property
    def cached_tokens(self) -> int:
        return self.prompt_tokens - self.evaluated_tokens


def quiet_llama_logs() -> None:
    """llama.cpp writes warnings to stderr even with verbose=False: route its log to nowhere."""
    global _LOG_SINK
    if _LOG_SINK is None:
        import llama_cpp

        @llama_cpp.llama_log_callback
        def _sink(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            pass

        _LOG_SINK = _sink  # kept alive: llama.cpp holds a raw pointer to it
    import llama_cpp

    llama_cpp.llama_log_set(_LOG_SINK, ctypes.c_void_p(0))


_LOG_SINK: Any = None


def gpu_offload_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def backend_name(n_gpu_layers: int) -> str:
    """Which llama.cpp backend runs the model: "cpu", or the GPU backend compiled in."""
    if n_gpu_layers == 0 or not gpu_offload_supported():
        return "cpu"
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace").lower()
    for name, marker in (("cuda", "cuda"), ("metal", "metal"), ("rocm", "hip"), ("vulkan", "vulkan")):
        if marker in info:
            return name
    return "metal" if sys.platform == "darwin" else "gpu"


def check_model_files(path: Path) -> None:
    """A clear ModelLoadError for a missing file or a split model with a missing shard."""
    if not path.is_file():
        raise ModelLoadError(
            f"translation model {path} not found (fetch it, or point [translate] model at a GGUF file)"
        )
    m = SPLIT_SHARD.search(path.name)
    if m is None:
        return
    index, count = int(m.group(1)), int(m.group(2))
    if index != 1:
        raise ModelLoadError(f"{path.name} is shard {index} of {count}: load a split model from shard 1")
    for i in range(2, count + 1):
        shard = path.with_name(SPLIT_SHARD.sub(f"-{i:05d}-of-{count:05d}.gguf", path.name))
        if not shard.is_file():
            raise ModelLoadError(f"shard {shard.name} of {path.name} is missing (expected beside it)")


def thinking_mode(template: str) -> str:
    """How thinking is kept off for a chat template: "enable_thinking=false" (Qwen3's hybrid
    models: the template's own switch), "/no_think" (a template that knows <think> but has no
    switch), or "none" (Qwen2.5, the Qwen3 Instruct-2507 models: nothing to switch off)."""
    if "enable_thinking" in template:
        return "enable_thinking=false"
    if THINK_OPEN in template:
        return "/no_think"
    return "none"


class LlamaTranslator(Translator):
    """A Qwen2.5-Instruct or Qwen3 GGUF (or any GGUF with a chat template) as a Translator."""

    def __init__(self, settings: LlamaSettings) -> None:
        self.settings = settings
        self.last_stats = TranslationStats()
        self.last_messages: list[dict[str, str]] = []  # the chat of the last prompt (for inspection)
        self.evaluated_total = 0  # every token llama.cpp evaluated (prompt and decode), all calls
        self.reuse_prefix = settings.reuse_prefix  # may be switched off later (bench: cold prefill)
        check_model_files(settings.model)
        try:
            import llama_cpp  # noqa: F401  (the one place its absence is turned into an EngineError)
        except ImportError as exc:
            raise ModelLoadError(f"llama-cpp-python is not installed ({exc}): run `make setup`") from exc
        quiet_llama_logs()
        n_gpu = settings.n_gpu_layers
        if n_gpu is None:
            n_gpu = -1 if gpu_offload_supported() else 0
        self.n_gpu_layers = n_gpu
        self.cpu_extra_buffers = True  # set by _load: whether llama.cpp's repacking/AMX is on
        self.n_threads = 0  # set by _load: llama.cpp's CPU threads for a token
        self.backend = backend_name(n_gpu)
        self._llm = _load(settings, n_gpu, self)
        self.model_name = str(self._llm.metadata.get("general.name", settings.model.name))
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            self.close()
            raise ModelLoadError(f"{settings.model} has no tokenizer.chat_template: not an instruct model?")
        import llama_cpp.llama_chat_format as chat_format

        model = self._llm._model
        eos, bos = self._llm.token_eos(), self._llm.token_bos()
        self._template = chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos >= 0 else "",
            bos_token=model.token_get_text(bos) if bos >= 0 else "",
        )
        self.thinking = thinking_mode(template)
        self._template_kwargs = {"enable_thinking": False} if self.thinking == "enable_thinking=false" else {}
        self.system_prompt = settings.system_prompt + (NO_THINK if self.thinking == "/no_think" else "")
        self._vocab = llama_cpp_vocab(self._llm)
        self.opens_think = self._opens_think()
        self.system_tokens = self._tokens([{"role": "system", "content": self.system_prompt}], False)
        if settings.reuse_prefix:
            self._warm(self.system_tokens)

    # ---- Translator ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": str(self.settings.model),
            "model_name": self.model_name,
            "n_gpu_layers": self.n_gpu_layers,
            "n_threads": self.n_threads,
            "n_ctx": self.settings.n_ctx,
            "system_prompt_tokens": len(self.system_tokens),
            "thinking": self.thinking,
        }

    def translate(
        self,
        text: str,
        context: Sequence[tuple[str, str]] = (),
        *,
        strict: bool = False,
        brief: bool = False,
    ) -> Iterator[str]:
        self.last_stats = TranslationStats()  # a prompt that cannot be built leaves no old counts
        tokens, n_pairs = self.prompt_tokens(text, [] if brief else context, strict=strict, brief=brief)
        stats = self.last_stats = TranslationStats(prompt_tokens=len(tokens), context_pairs=n_pairs)
        return self._decode(tokens, stats)

    def prompt_tokens(
        self, text: str, context: Sequence[tuple[str, str]] = (), *, strict: bool = False, brief: bool = False
    ) -> tuple[list[int], int]:
        """The prompt of `text`, fitted to n_ctx by dropping the oldest context pairs first (room
        for max_tokens kept), and how many pairs it holds."""
        s = self.settings
        pairs = [] if strict else list(context)
        user = BRIEF_PREFIX + text if brief else STRICT_PREFIX + text if strict else text
        tokens = self._prompt(pairs, user)
        while len(tokens) + s.max_tokens > s.n_ctx and pairs:
            pairs.pop(0)
            tokens = self._prompt(pairs, user)
        if len(tokens) + s.max_tokens > s.n_ctx:
            raise ContextOverflow(
                f"sentence needs {len(tokens)} prompt tokens + {s.max_tokens} to answer, over n_ctx {s.n_ctx}"
            )
        return tokens, len(pairs)

    @property
    def llm(self) -> llama_cpp.Llama:
        """The loaded Llama (for measuring it: bench/translate.py)."""
        if self._llm is None:
            raise InferenceError("the translation engine is closed")
        return self._llm

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            llm.close()

    # ---- internals -------------------------------------------------------------------------------
    def _decode(self, tokens: list[int], stats: TranslationStats) -> Iterator[str]:
        llm = self._llm
        if llm is None:
            raise InferenceError("the translation engine is closed")
        if not self.reuse_prefix:
            llm.reset()
        import llama_cpp

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        think = ThinkFilter(inside=self.opens_think)
        self._evals.clear()  # this sentence's evals only: the first one is its prompt
        t0 = time.perf_counter()
        try:
            gen = llm.generate(tokens, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
            for token in gen:
                if stats.generated_tokens == 0:
                    stats.evaluated_tokens, stats.prefill_ms = self._evals[0]
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    break
                stats.generated_tokens += 1
                piece = think.feed(decoder.decode(llm.detokenize([token])))
                stats.thought_chars = think.thought
                if piece:
                    yield piece
                if stats.generated_tokens >= self.settings.max_tokens:
                    break
            tail = think.feed(decoder.decode(b"", final=True)) + think.flush()
            stats.thought_chars = think.thought
            if tail:
                yield tail
        except (RuntimeError, ValueError, OSError, ctypes.ArgumentError) as exc:
            raise InferenceError(f"llama.cpp failed while translating: {exc}") from exc
        finally:
            stats.decode_ms = (time.perf_counter() - t0) * 1000 - stats.prefill_ms

    def _prompt(self, pairs: Sequence[tuple[str, str]], user: str) -> list[int]:
        messages = [{"role": "system", "content": self.system_prompt}]
        for en, ja in pairs:
            messages += [{"role": "user", "content": en}, {"role": "assistant", "content": ja}]
        messages.append({"role": "user", "content": user})
        self.last_messages = messages
        return self._tokens(messages, True)

    def _tokens(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> list[int]:
        import jinja2

        if self._llm is None:
            raise InferenceError("the translation engine is closed")
        self._template.add_generation_prompt = add_generation_prompt
        try:
            prompt = self._template(messages=messages, **self._template_kwargs).prompt  # type: ignore[arg-type]
            return self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        except (jinja2.TemplateError, ValueError, RuntimeError) as exc:
            raise InferenceError(f"cannot build the prompt with the model's chat template: {exc}") from exc

    def _opens_think(self) -> bool:
        """Whether the template's generation prompt leaves a <think> block open (a thinking-only
        model): then the answer starts inside it, and ThinkFilter starts there too."""
        import jinja2

        probe = "\u2042"  # ⁂: found once in the rendered prompt, where the user's turn is
        chat = [{"role": "system", "content": "s"}, {"role": "user", "content": probe}]
        try:
            self._template.add_generation_prompt = True
            prompt = self._template(messages=chat, **self._template_kwargs).prompt  # type: ignore[arg-type]
        except (jinja2.TemplateError, ValueError, TypeError) as exc:
            self.close()
            raise ModelLoadError(f"{self.settings.model}: cannot render its chat template: {exc}") from exc
        tail = prompt[prompt.rfind(probe) + 1 :]
        return tail.rfind(THINK_OPEN) > tail.rfind(THINK_CLOSE)

    def _warm(self, tokens: list[int]) -> None:
        """Evaluate the system prompt once, so the first sentence already finds it cached."""
        assert self._llm is not None
        try:
            self._llm.reset()
            self._llm.eval(tokens)
        except (RuntimeError, ValueError) as exc:
            raise ModelLoadError(f"cannot evaluate the system prompt: {exc}") from exc

    @property
    def _evals(self) -> list[tuple[int, float]]:
        """(tokens, ms) of every eval call, in order (kept by the Llama subclass in _load)."""
        return self._llm.eval_log if self._llm is not None else []


def llama_cpp_vocab(llm: llama_cpp.Llama) -> Any:
    import llama_cpp

    return llama_cpp.llama_model_get_vocab(llm.model)


def _load(settings: LlamaSettings, n_gpu_layers: int, owner: LlamaTranslator) -> Any:
    """A Llama whose eval() records what it evaluated: the one place tokens enter llama.cpp."""
    from llama_cpp import Llama

    class CountingLlama(Llama):
        eval_log: list[tuple[int, float]]

        def eval(self, tokens: Sequence[int]) -> None:
            t0 = time.perf_counter()
            super().eval(tokens)
            self.eval_log.append((len(tokens), (time.perf_counter() - t0) * 1000))
            owner.evaluated_total += len(tokens)

    CountingLlama.eval_log = []
    try:
        # a build without a GPU backend runs every layer on the CPU, whatever n_gpu_layers asks
        on_gpu = n_gpu_layers if gpu_offload_supported() else 0
        extra = use_extra_buffers(settings.cpu_extra_buffers, on_gpu)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    owner.cpu_extra_buffers = extra
    try:
        with extra_buffers(extra):
            llm = CountingLlama(
                model_path=str(settings.model),
                n_ctx=settings.n_ctx,
                n_threads=settings.n_threads,
                n_threads_batch=settings.n_threads,
                n_gpu_layers=n_gpu_layers,
                seed=settings.seed,
                verbose=False,
            )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"llama.cpp cannot load {settings.model}: {exc}") from exc
    llm.eval_log = []
    owner.n_threads = int(llm.n_threads)
    return llm
