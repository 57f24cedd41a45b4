"""Small helpers shared by the Streamlit pages: error guards, cached resources, optional parts.

Pages stay thin: they call `kb` and `advisor` through these helpers, which turn the packages'
errors into an `st.error` that says what to do (never a stack trace) and show an `st.info`
for a part of the advisor that is not built yet.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import streamlit as st

log = logging.getLogger("edgedl.app")

#: The largest model the Advise page accepts as an upload (stated on the page).
MAX_MODEL_MB = 200
#: The largest labelled-data file (.npz) the Advise page accepts.
MAX_DATA_MB = 200
_ONNX_HINT = (
    "Upload a model saved as ONNX (.onnx), e.g. from torch.onnx.export(model, args, "
    "'model.onnx', external_data=False), or pick a zoo model."
)


def known_errors() -> tuple[type[BaseException], ...]:
    """The packages' error base classes (advisor's only once that package has them)."""
    from kb.errors import KBError

    errors: list[type[BaseException]] = [KBError]
    try:
        from advisor.errors import AdvisorError

        errors.append(AdvisorError)
    except ImportError:  # a partial checkout without advisor.errors
        pass
    return tuple(errors)


def error_text(exc: BaseException) -> str:
    """One readable line for an exception (pydantic's first error, or the message)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        return f"{where}: {msg}" if where else msg
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def guarded(doing: str) -> Iterator[None]:
    """Run a block; show a failure as `st.error` naming what failed and what to do.

    Expected errors (the packages' own, invalid input) show their message. Anything else is
    a bug: the page says so in one line and the traceback goes to the server log only.
    """
    from pydantic import ValidationError

    try:
        yield
    except known_errors() as exc:
        st.error(f"{doing} failed: {error_text(exc)}")
    except ValidationError as exc:
        st.error(f"{doing}: invalid input — {error_text(exc)}. Correct the field and try again.")
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        st.error(f"{doing} failed: {exc.strerror or exc}: {exc.filename}")
    except Exception as exc:  # the page edge: a bug must not print a stack trace on the page
        log.exception("unexpected error while %s", doing)
        st.error(
            f"{doing} failed unexpectedly ({type(exc).__name__}: {exc}). This is a bug in "
            "EdgeDL Advisor; the server log has the details — please report it."
        )


def optional_module(name: str, what: str) -> ModuleType | None:
    """Import `name`, or show `st.info` that `what` is not available yet and return None."""
    if importlib.util.find_spec(name) is None:
        st.info(f"{what} is not available yet (module `{name}` is not part of this build).")
        return None
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        st.info(f"{what} is not available yet: {exc}.")
        return None


def optional_attr(module: str, attr: str, what: str) -> Any:
    """`module.attr`, or None after an `st.info` saying `what` is not available yet."""
    mod = optional_module(module, what)
    if mod is None:
        return None
    value = getattr(mod, attr, None)
    if value is None:
        st.info(f"{what} is not available yet (`{module}.{attr}` is not defined).")
    return value


# --- cached resources ----------------------------------------------------------------------


@st.cache_resource(show_spinner="Opening the knowledge base…")
def knowledge_base():
    """The bundled knowledge base, opened once per server process."""
    from kb import KnowledgeBase

    return KnowledgeBase.open()


@st.cache_resource(show_spinner=False)
def hardware_catalog():
    """The hardware and link catalog (data/hardware.yaml), read once per server process."""
    from advisor.targets.catalog import load_catalog

    return load_catalog()


def app_folder(*parts: str) -> Path:
    """A folder under the advisor's cache folder for the app's files (uploads, run artifacts)."""
    try:
        from advisor.cache import cache_dir

        root = cache_dir()
    except ImportError:
        from kb.store import default_cache_dir

        root = default_cache_dir()
    folder = root.joinpath("app", *parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --- uploads -------------------------------------------------------------------------------


def check_upload(name: str, data: bytes, limit_mb: float = MAX_MODEL_MB) -> str | None:
    """Why an uploaded model cannot be used (size, not ONNX), or None when it looks fine.

    Only a cheap first look: the advisor's loader does the full check (onnx.checker, ONNX
    Runtime) when the model is used.
    """
    size_mb = len(data) / 2**20
    if size_mb > limit_mb:
        return (
            f"{name} is {size_mb:.1f} MB, over the {limit_mb:g} MB upload limit. Use a smaller "
            "model, or run it from the command line: `edgedl advise path/to/model.onnx ...`."
        )
    if not data:
        return f"{name} is empty. {_ONNX_HINT}"
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError):
        return f"{name} is not an ONNX model (it does not parse as one). {_ONNX_HINT}"
    if not model.HasField("graph") or not model.opset_import or not model.graph.node:
        return f"{name} is not an ONNX model (no graph, opset or nodes). {_ONNX_HINT}"
    return None


def safe_name(name: str, suffix: str) -> str:
    """The uploaded file's own name, reduced to safe characters, ending in `suffix`."""
    stem = Path(name).name
    stem = stem[: -len(suffix)] if stem.lower().endswith(suffix) else Path(stem).stem
    clean = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("._")
    return f"{clean or 'upload'}{suffix}"


def save_upload(data: bytes, suffix: str, name: str | None = None) -> Path:
    """Store uploaded bytes under the app folder, in a folder named by their digest (no
    duplicates) and under the file's own name, so results and file names keep it."""
    digest = hashlib.sha256(data).hexdigest()[:20]
    if name is None:
        path = app_folder("uploads") / f"{digest}{suffix}"
    else:
        path = app_folder("uploads", digest) / safe_name(name, suffix)
    if not path.exists():
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def is_upload(path: str | None) -> bool:
    """Whether `path` is a file the app stored from an upload (a path the user cannot run)."""
    if not path:
        return False
    try:
        return Path(path).resolve().is_relative_to(app_folder("uploads").resolve())
    except OSError:
        return False


def runnable_command(command: str, paths: list[str | None]) -> tuple[str, list[str]]:
    """The reproduce command with the app's upload paths replaced by the files' own names,
    and those names (run the command in the folder holding them)."""
    names = []
    for path in paths:
        if path and is_upload(path) and path in command:
            command = command.replace(path, Path(path).name)
            names.append(Path(path).name)
    return command, names


def web_text(text: str) -> str:
    """An advisor message in the page's words: command-line flags named as the page's fields."""
    import re

    text = re.sub(r"\s*\(pass --input-shape [^)]*\)", "", text)
    for flag, label in WEB_WORDS:
        text = text.replace(flag, label)
    return text


#: command-line wording in advisor messages, and what the Advise page calls the same thing
WEB_WORDS = (
    ("no --data given", "no labelled data given"),
    ("samples of --data", "samples of the labelled data"),
    ("pass --input-shape", "enter the shape in the shape field"),
    ("--input-shape", "the input shape field"),
    ("--accuracy-budget", "the accuracy budget"),
    ("--latency-ms", "the latency target"),
    ("--data", "the labelled data"),
    ("--cloud", "a cloud server"),
    ("--edge", "an edge server"),
)


def field_problem(model: type, name: str, value: Any) -> str | None:
    """Why `value` is not valid for field `name` of pydantic `model` (the API's own rules:
    bounds, finiteness), or None when it is."""
    from pydantic import ValidationError

    try:
        _adapter(model, name).validate_python(value)
    except ValidationError as exc:
        return exc.errors()[0]["msg"].removeprefix("Value error, ")
    return None


@functools.cache
def _adapter(model: type, name: str):
    from typing import Annotated

    from pydantic import ConfigDict, TypeAdapter

    info = model.model_fields[name]  # type: ignore[attr-defined]
    finite = model.model_config.get("allow_inf_nan", True)  # type: ignore[attr-defined]
    kind = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(kind, config=ConfigDict(allow_inf_nan=finite))


def input_dims(path: Path) -> dict[str, list[int | str]]:
    """The model's graph inputs (initializers excluded) with fixed ints or symbolic names.

    Read straight from the graph's value infos, without external data, so the page can ask
    for symbolic dimensions before the advisor loads the model.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    out: dict[str, list[int | str]] = {}
    for vi in model.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        dims: list[int | str] = []
        for d in vi.type.tensor_type.shape.dim:
            kind = d.WhichOneof("value")
            dims.append(d.dim_value if kind == "dim_value" else (d.dim_param or "?"))
        out[vi.name] = dims
    return out


def parse_shape(text: str) -> list[int]:
    """'1x3x224x224' (or with commas/spaces) -> [1, 3, 224, 224]; ValueError names the fix."""
    parts = [p for p in text.replace(",", "x").replace(" ", "x").lower().split("x") if p]
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if not dims or any(d <= 0 for d in dims):
        raise ValueError(f"{text!r} is not a shape; write positive integers like 1x3x224x224")
    return dims


# --- session state -------------------------------------------------------------------------


def state_get(key: str, default: Any = None) -> Any:
    """`st.session_state[key]`, or `default` when unset (the guarded read)."""
    return st.session_state[key] if key in st.session_state else default


def entry_link(entry_id: str, label: str | None = None) -> str:
    """A Markdown link to the Explore page's entry view (opens in a new tab).

    Explore is the default page, served at the app's root; the relative `./` keeps any
    `server.baseUrlPath`.
    """
    text = (label or entry_id).replace("[", "(").replace("]", ")")
    return f"[{text}](./?entry={entry_id})"
