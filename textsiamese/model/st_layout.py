"""Reading a sentence-transformers directory (``modules.json``) into a ``SiameseModel`` that gives its vectors.

Understood: ``Transformer`` → ``Pooling`` (one mean, cls or max mode) → any number of ``Dense`` and
``Normalize`` modules, and a ``Router`` (``Asym`` in older releases) first, whose routes each hold such a
chain or its start (modules after the Router apply to every route). A Router becomes a pseudo-siamese
model: the query role takes the route sentence-transformers' ``encode_query`` takes (``task="query"``), the
document role the one ``encode_document`` takes (``task="document"``), with ``passage`` / ``corpus`` /
``doc`` (and ``queries`` / ``question``) tried when those names find none, then the Router's default route.
Two roles on the same chain share one tower. A ``Normalize`` that ends every role's chain is the model's
``normalize``; anywhere else it is a layer of the tower's head (``towers.projected``), as are the Dense
layers. Any other module is refused by name; so are pickled weights (a Dense ``pytorch_model.bin``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from textsiamese.errors import ModelError
from textsiamese.model.files import check_tokenizer, check_weights, read_json
from textsiamese.towers import Tower, TransformerTower
from textsiamese.towers.projected import ACTIVATIONS, DenseLayer, L2Normalize, ProjectedTower

_POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}
_CHAIN_HELP = "expected Transformer, Pooling, then any Dense / Normalize (or a Router of such chains)"

# Route names tried per role, after sentence-transformers' own resolution of the first one finds nothing.
ROLE_TASKS = {
    "query": ("query", "queries", "question"),
    "document": ("document", "documents", "doc", "passage", "passages", "corpus"),
}

# sentence-transformers' similarity_fn_name ↔ textsiamese's distance names (same meaning and ordering).
ST_SIMILARITIES = {"cosine": "cosine", "dot": "dot", "euclidean": "euclidean", "manhattan": "manhattan"}


@dataclass(frozen=True)
class StModule:
    """One module of a chain: its class name (``Dense``) and its folder."""

    kind: str
    folder: Path


def load_sentence_transformers(directory: Path, trust_remote_code: bool = False) -> Any:
    """The ``SiameseModel`` of a sentence-transformers directory (see the module docstring)."""
    from textsiamese.model.siamese import SiameseModel

    chains = role_chains(directory)
    normalize = all(chain[-1].kind == "Normalize" for chain in chains.values())
    if normalize:
        chains = {role: chain[:-1] for role, chain in chains.items()}
    query = _tower(chains["query"], trust_remote_code)
    shared = chains["query"] == chains["document"]  # one chain: one tower, a siamese model
    document = query if shared else _tower(chains["document"], trust_remote_code)
    return SiameseModel(
        query=query,
        document=document,
        normalize=normalize,
        similarity=st_similarity(directory),
        prompts=st_prompts(directory),
    )


def role_chains(directory: Path) -> dict[str, list[StModule]]:
    """Each role's chain of modules, Router routes resolved."""
    modules = read_json(directory / "modules.json")
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules) or not modules:
        raise ModelError(f"{directory / 'modules.json'}: expected a list of modules")
    top = [
        StModule(_kind(m.get("type"), directory / "modules.json"), directory / str(m.get("path", "")))
        for m in modules
    ]
    if any(module.kind in ("Router", "Asym") for module in top[1:]):
        raise ModelError(f"{directory}: a Router / Asym module is supported only as the first module")
    if top[0].kind not in ("Router", "Asym"):
        return {"query": top, "document": top}
    routes, default = _routes(top[0].folder)
    return {role: routes[_route_for(role, routes, default, top[0].folder)] + top[1:] for role in ROLE_TASKS}


def _kind(type_name: Any, source: Path) -> str:
    """A module's class name, for sentence-transformers' own modules (``sentence_transformers.….Dense``)."""
    text = str(type_name or "")
    if not text.startswith("sentence_transformers."):
        raise ModelError(
            f"{source}: module type {text!r} is not a sentence-transformers module; not supported"
        )
    return text.rsplit(".", 1)[-1]


def _routes(folder: Path) -> tuple[dict[str, list[StModule]], dict[str, Any]]:
    """A Router's routes (name → modules) and its parameters, from ``router_config.json`` (or the legacy
    ``config.json`` of Asym)."""
    path = folder / "router_config.json"
    if not path.is_file():
        path = folder / "config.json"
    config = read_json(path)
    types, structure = (
        (config.get("types"), config.get("structure")) if isinstance(config, dict) else (None, None)
    )
    if not isinstance(types, dict) or not isinstance(structure, dict) or not structure:
        raise ModelError(f"{path}: a Router config needs 'types' and 'structure'")
    routes: dict[str, list[StModule]] = {}
    for name, ids in structure.items():
        if not isinstance(ids, list) or any(i not in types for i in ids):
            raise ModelError(f"{path}: route {name!r} names modules missing from 'types'")
        if any(Path(str(i)).is_absolute() or ".." in Path(str(i)).parts for i in ids):
            raise ModelError(f"{path}: route {name!r} names a module folder outside the model directory")
        routes[str(name)] = [StModule(_kind(types[i], path), folder / str(i)) for i in ids]
    parameters = config.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ModelError(f"{path}: 'parameters' must be an object")
    mappings: dict[tuple[Any, Any], str] = {}
    for key, target in (parameters.get("route_mappings") or {}).items():
        try:
            task, modality = ast.literal_eval(key)
        except (ValueError, SyntaxError, TypeError):
            raise ModelError(f"{path}: route mapping {key!r} is not a (task, modality) pair") from None
        mappings[(task, tuple(sorted(modality)) if isinstance(modality, (list, tuple)) else modality)] = (
            target
        )
    default = parameters.get("default_route")
    if default is None and parameters.get("allow_empty_key", True):
        default = next(iter(routes))
    return routes, {"mappings": mappings, "default": default, "path": path}


def _route_for(role: str, routes: dict[str, list[StModule]], settings: dict[str, Any], folder: Path) -> str:
    """The route ``role`` takes: sentence-transformers' resolution for each of the role's task names in turn
    (modality text), then the default route."""
    mappings = settings["mappings"]
    for task in ROLE_TASKS[role]:
        for key in ((task, "text"), (task, None), (None, "text"), (None, None)):
            if key in mappings:
                return str(mappings[key])
        for name in (task, "text"):
            if name in routes:
                return name
    if settings["default"] in routes:
        return str(settings["default"])
    raise ModelError(
        f"{settings['path']}: no route for the {role} role (routes: {', '.join(routes)}; tried "
        f"{', '.join(ROLE_TASKS[role])}) and no default route"
    )


def _tower(chain: list[StModule], trust_remote_code: bool) -> Tower:
    """The tower of one chain: a ``TransformerTower`` with the chain's pooling, under a head of its Dense /
    Normalize modules when it has any."""
    kinds = [module.kind for module in chain]
    if kinds[:2] != ["Transformer", "Pooling"] or not set(kinds[2:]) <= {"Dense", "Normalize"}:
        raise ModelError(
            f"{chain[0].folder}: sentence-transformers modules {kinds} are not supported; {_CHAIN_HELP}"
        )
    tower = _transformer(chain[0].folder, _pooling_mode(chain[1].folder), trust_remote_code)
    layers: list[nn.Module] = [
        _dense(module.folder) if module.kind == "Dense" else _normalize(module.folder) for module in chain[2:]
    ]
    return ProjectedTower(tower, layers) if layers else tower


def _transformer(folder: Path, pooling: str, trust_remote_code: bool) -> TransformerTower:
    if not folder.is_dir():
        raise ModelError(f"{folder}: the Transformer module's folder is missing")
    check_weights(folder)
    check_tokenizer(folder)
    settings = (
        read_json(folder / "sentence_bert_config.json")
        if (folder / "sentence_bert_config.json").is_file()
        else {}
    )
    max_length = settings.get("max_seq_length")
    if max_length is None and (folder / "tokenizer_config.json").is_file():
        # sentence-transformers 6 keeps the limit as the tokenizer's model_max_length instead
        max_length = read_json(folder / "tokenizer_config.json").get("model_max_length")
    return TransformerTower.from_pretrained(
        folder,
        pooling=pooling,
        max_length=max_length,
        lowercase=bool(settings.get("do_lower_case", False)),
        trust_remote_code=trust_remote_code,
    )


def _pooling_mode(folder: Path) -> str:
    """The single mean / cls / max mode of a Pooling module's config (old boolean keys or ST 6's name)."""
    config = read_json(folder / "config.json")
    modes = [mode for key, mode in _POOLING_MODES.items() if config.get(key)]
    named = config.get("pooling_mode")  # sentence-transformers 6: "mean" (or a list of modes)
    if named is not None:
        modes += [str(m) for m in ([named] if isinstance(named, str) else named)]
    if len(modes) != 1 or any(
        config.get(k) for k in config if k.startswith("pooling_mode_") and k not in _POOLING_MODES
    ):
        raise ModelError(f"{folder}: only a single mean, cls or max pooling mode is supported")
    if modes[0] not in _POOLING_MODES.values():
        raise ModelError(f"{folder}: pooling mode {modes[0]!r} is not supported (mean, cls or max)")
    if config.get("include_prompt") is False:
        raise ModelError(
            f"{folder}: include_prompt false (pooling that leaves out the prompt's tokens) is not supported"
        )
    return modes[0]


def _check_embedding_keys(folder: Path, config: dict[str, Any]) -> None:
    """Dense and Normalize act on the pooled vector; on token vectors (before Pooling) they are refused."""
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, "sentence_embedding") != "sentence_embedding":
            raise ModelError(f"{folder}: {key} {config[key]!r} is not supported (only sentence_embedding)")


def _dense(folder: Path) -> DenseLayer:
    """A Dense module: its config (sizes, bias, activation, residual) and safetensors weights."""
    config = read_json(folder / "config.json")
    if not isinstance(config, dict) or "in_features" not in config or "out_features" not in config:
        raise ModelError(f"{folder / 'config.json'}: a Dense config needs in_features and out_features")
    _check_embedding_keys(folder, config)
    activation = _activation(folder, config.get("activation_function", "torch.nn.modules.activation.Tanh"))
    layer = DenseLayer(
        int(config["in_features"]),
        int(config["out_features"]),
        bias=bool(config.get("bias", True)),
        activation=activation,
        residual=bool(config.get("use_residual", False)),
    )
    check_weights(folder)
    path = folder / "model.safetensors"
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ModelError(f"{path}: cannot read the Dense weights ({error})") from None
    wanted = {key: tuple(value.shape) for key, value in layer.state_dict().items()}
    got = {key: tuple(value.shape) for key, value in weights.items()}
    if wanted != got:
        raise ModelError(f"{path}: Dense weights ({_shapes(got)}) do not fit its config ({_shapes(wanted)})")
    layer.load_state_dict(weights, strict=True)
    return layer


def _shapes(shapes: dict[str, tuple[int, ...]]) -> str:
    return "; ".join(f"{key} {'x'.join(map(str, shape))}" for key, shape in sorted(shapes.items()))


def _activation(folder: Path, path: Any) -> str:
    """The textsiamese name of a Dense activation saved as a torch class path (``torch.nn…Tanh``)."""
    text = str(path)
    by_class = {cls: name for name, cls in ACTIVATIONS.items()}
    name = by_class.get(text.rsplit(".", 1)[-1]) if text.startswith("torch.nn.") else None
    if name is None:
        raise ModelError(
            f"{folder}: Dense activation {text!r} is not supported (torch.nn {', '.join(ACTIVATIONS.values())})"
        )
    return name


def _normalize(folder: Path) -> L2Normalize:
    if (folder / "config.json").is_file():
        config = read_json(folder / "config.json")
        if isinstance(config, dict):
            _check_embedding_keys(folder, config)
    return L2Normalize()


def st_similarity(directory: Path) -> str:
    """The distance named by ``config_sentence_transformers.json``'s ``similarity_fn_name`` (cosine when
    none is named)."""
    path = directory / "config_sentence_transformers.json"
    settings = read_json(path) if path.is_file() else {}
    name = settings.get("similarity_fn_name") if isinstance(settings, dict) else None
    if name is None:
        return "cosine"
    if name not in ST_SIMILARITIES:
        raise ModelError(
            f"{path}: similarity_fn_name {name!r} is not supported ({', '.join(ST_SIMILARITIES)})"
        )
    return ST_SIMILARITIES[name]


# sentence-transformers names its prompts freely; these names serve each role, the first one present wins.
_ST_ROLE_PROMPTS = {"query": ("query",), "document": ("document", "passage", "corpus")}


def st_prompts(directory: Path) -> dict[str, str]:
    """The role prompts of a sentence-transformers directory's ``config_sentence_transformers.json``: its
    ``query`` prompt for the query role, its ``document`` / ``passage`` / ``corpus`` prompt for the document
    role, and its ``default_prompt_name`` prompt for a role with none of its own (as ``encode_query`` /
    ``encode_document`` and plain ``encode`` choose in sentence-transformers)."""
    path = directory / "config_sentence_transformers.json"
    if not path.is_file():
        return {}
    settings = read_json(path)
    prompts = settings.get("prompts") or {} if isinstance(settings, dict) else {}
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise ModelError(f"{path}: prompts must map names to strings")
    default_name = settings.get("default_prompt_name")
    if default_name is not None and default_name not in prompts:
        raise ModelError(f"{path}: default_prompt_name {default_name!r} is not one of the prompts")
    default = prompts[default_name] if default_name else ""
    chosen: dict[str, str] = {}
    for role, names in _ST_ROLE_PROMPTS.items():
        own = next((prompts[name] for name in names if name in prompts), None)
        chosen[role] = default if own is None else own
    return {role: text for role, text in chosen.items() if text}
