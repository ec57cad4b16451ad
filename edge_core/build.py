"""``ami-edge build``: Greengrass component artifacts and rendered recipes, and the recipe checker.

Output layout (what ``greengrass-cli deployment create --recipeDir --artifactDir`` and the
Greengrass console expect)::

    greengrass-build/
      recipes/<component>-<version>.yaml
      artifacts/<component>/<version>/ami_edge-<v>-py3-none-any.whl, constraints.txt
      artifacts/com.amiedge.AnomalyModel/<model version>/model.onnx, model-card.json
      gdk/<component>/gdk-config.json, recipe.yaml   (one GDK project per component)

Recipe templates live in ``recipes/<component>.yaml``. Build placeholders are upper-case in
braces ({COMPONENT_VERSION}, {BUCKET}, {WHEEL}, ...); ``{namespace:key}`` forms are Greengrass
recipe variables and are left alone. Every rendered recipe passes :func:`check_recipes`, the
project's stricter rules on top of GDK's schema:

* lifecycle keys are known ones (GDK's schema does not catch a misspelled step), Run xor Startup,
  Install has an explicit Timeout;
* every ``{configuration:/a/b}`` pointer resolves in DefaultConfiguration, whose numbers are
  strings;
* every artifact URI names a file that was built, with the recorded digest;
* accessControl policy ids are unique across components;
* the rendered recipe is under 16,000 bytes (GDK refuses bigger ones).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from edge_core import __version__
from edge_core.errors import ConfigError

__all__ = [
    "COMPONENTS",
    "MAX_RECIPE_BYTES",
    "BuildOptions",
    "BuildResult",
    "ComponentSpec",
    "build",
    "check_recipes",
    "gdk_config",
    "lower_keys",
    "main",
    "recipe_problems",
    "register",
    "render_template",
]

log = logging.getLogger(__name__)

MAX_RECIPE_BYTES = 16_000
ROOT = Path(__file__).resolve().parent.parent
MODEL_COMPONENT = "com.amiedge.AnomalyModel"
LIFECYCLE_STEPS = ("setenv", "bootstrap", "install", "startup", "run", "shutdown", "recover")
STEP_KEYS = ("script", "requiresprivilege", "skipif", "timeout", "setenv")
_PLACEHOLDER = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")
_CONFIG_POINTER = re.compile(r"\{configuration:(/[^}]*)\}")
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$")


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    """One component: its template and what its artifacts are (``python`` wheel or ``model``)."""

    name: str
    kind: str  # "python" | "model"
    extras: tuple[str, ...] = ()

    @property
    def template(self) -> Path:
        return ROOT / "recipes" / f"{self.name}.yaml"


COMPONENTS: tuple[ComponentSpec, ...] = (
    ComponentSpec("com.amiedge.Concentrator", "python"),
    ComponentSpec("com.amiedge.Analytics", "python", ("edge-ml",)),
    ComponentSpec(MODEL_COMPONENT, "model"),
)


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """Options of one build. ``version`` applies to the Python components; the model component
    has its own ``model_version``. ``bucket``/``prefix`` form artifact URIs
    ``s3://{bucket}/{prefix}{component}/{version}/{file}``."""

    out: Path = Path("greengrass-build")
    version: str = __version__
    model_version: str = "1.0.0"
    model_dir: Path = Path("models/anomaly")
    skip_model: bool = False
    bucket: str = "BUCKET"
    prefix: str = ""
    region: str = "REGION"
    account: str = "ACCOUNT"
    secret_prefix: str = "ami-edge/dlms/"
    components: tuple[str, ...] = ()
    wheel: Path | None = None  # reuse a built wheel instead of running pip wheel


@dataclass
class BuildResult:
    recipes: dict[str, Path] = field(default_factory=dict)
    artifacts: dict[str, list[Path]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


# -- rendering ------------------------------------------------------------------------------


def render_template(text: str, values: Mapping[str, str]) -> str:
    """Fill build placeholders; an unknown upper-case placeholder is a ConfigError."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise ConfigError(f"unknown recipe placeholder {{{m.group(1)}}}")
        return values[m.group(1)]

    return _PLACEHOLDER.sub(sub, text)


def lower_keys(obj: Any) -> Any:
    """Lower-case every mapping key, as GDK does before validating against its schema."""
    if isinstance(obj, Mapping):
        return {str(k).lower(): lower_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [lower_keys(v) for v in obj]
    return obj


def _get(mapping: Any, key: str) -> Any:
    """Case-insensitive key lookup (recipe keys are case-insensitive)."""
    if not isinstance(mapping, Mapping):
        return None
    for k, v in mapping.items():
        if str(k).lower() == key:
            return v
    return None


# -- checking -------------------------------------------------------------------------------


def _strings(obj: Any) -> Iterable[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def _numbers(obj: Any, path: str) -> Iterable[str]:
    if isinstance(obj, bool):
        return
    if isinstance(obj, int | float):
        yield path
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}/{i}")


def _resolve(config: Any, pointer: str) -> bool:
    node = config
    for part in pointer.strip("/").split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def recipe_problems(
    recipe: Mapping[str, Any],
    *,
    text: str | None = None,
    artifacts_dir: Path | None = None,
    schema: Mapping[str, Any] | None = None,
) -> list[str]:
    """Every rule one recipe breaks (empty when it is fine); see the module doc.

    ``text`` is the rendered recipe (size rule), ``artifacts_dir`` the build's artifacts folder
    (URI rule), ``schema`` GDK's recipe schema (validated on lower-cased keys).
    """
    problems: list[str] = []
    name = str(_get(recipe, "componentname") or "?")
    version = str(_get(recipe, "componentversion") or "?")
    if schema is not None:
        import jsonschema

        validator = jsonschema.Draft7Validator(schema)
        for err in validator.iter_errors(lower_keys(recipe)):
            where = "/".join(str(p) for p in err.absolute_path)
            problems.append(f"schema: {where}: {err.message}")
    if text is not None and len(text.encode()) >= MAX_RECIPE_BYTES:
        problems.append(f"size: {len(text.encode())} bytes, GDK refuses {MAX_RECIPE_BYTES} or more")
    config = _get(_get(recipe, "componentconfiguration"), "defaultconfiguration") or {}
    for path in _numbers(config, ""):
        problems.append(f"DefaultConfiguration{path}: number, keep numbers as strings")
    for s in _strings(recipe):
        for pointer in _CONFIG_POINTER.findall(s):
            if not _resolve(config, pointer):
                problems.append(
                    f"{{configuration:{pointer}}} does not resolve in DefaultConfiguration"
                )
    for i, manifest in enumerate(_get(recipe, "manifests") or []):
        lifecycle = _get(manifest, "lifecycle")
        if lifecycle is not None:
            problems.extend(_lifecycle_problems(lifecycle, f"Manifests[{i}].Lifecycle"))
        for j, artifact in enumerate(_get(manifest, "artifacts") or []):
            where = f"Manifests[{i}].Artifacts[{j}]"
            problems.extend(_artifact_problems(artifact, where, name, version, artifacts_dir))
    top = _get(recipe, "lifecycle")
    if top:
        problems.extend(_lifecycle_problems(top, "Lifecycle"))
    return problems


def _lifecycle_problems(lifecycle: Any, where: str) -> list[str]:
    if not isinstance(lifecycle, Mapping):
        return [f"{where}: not a mapping"]
    problems = [
        f"{where}.{k}: unknown lifecycle step"
        for k in lifecycle
        if str(k).lower() not in LIFECYCLE_STEPS
    ]
    keys = {str(k).lower() for k in lifecycle}
    if "run" in keys and "startup" in keys:
        problems.append(f"{where}: Run and Startup are exclusive")
    for k, step in lifecycle.items():
        if str(k).lower() in ("setenv",) or not isinstance(step, Mapping):
            continue
        problems.extend(
            f"{where}.{k}.{sk}: unknown step key" for sk in step if str(sk).lower() not in STEP_KEYS
        )
        if _get(step, "script") is None:
            problems.append(f"{where}.{k}: no Script")
    install = _get(lifecycle, "install")
    if install is not None and (
        not isinstance(install, Mapping) or _get(install, "timeout") is None
    ):
        problems.append(f"{where}.Install: set an explicit Timeout (the default is 120 s)")
    return problems


def _artifact_problems(
    artifact: Any, where: str, name: str, version: str, artifacts_dir: Path | None
) -> list[str]:
    uri = str(_get(artifact, "uri") or "")
    if not uri.startswith("s3://"):
        return [f"{where}: URI {uri!r} is not s3://"]
    if artifacts_dir is None:
        return []
    file_name = uri.rsplit("/", 1)[-1]
    if f"/{name}/{version}/" not in uri:
        return [f"{where}: URI {uri} is not under {name}/{version}/"]
    built = artifacts_dir / name / version / file_name
    if not built.is_file():
        return [f"{where}: URI {uri} has no built artifact at {built}"]
    digest = _get(artifact, "digest")
    if digest is not None and digest != _digest(built):
        return [f"{where}: digest of {built} differs from the recipe's"]
    return []


def check_recipes(
    recipes: Mapping[str, tuple[Mapping[str, Any], str]],
    *,
    artifacts_dir: Path | None = None,
    schema: Mapping[str, Any] | None = None,
) -> None:
    """Check a set of rendered recipes ({name: (recipe, text)}); ConfigError lists every problem.

    Adds the cross-component rule: accessControl policy ids are unique across all components.
    """
    problems: list[str] = []
    owners: dict[str, str] = {}
    for name, (recipe, text) in recipes.items():
        problems.extend(
            f"{name}: {p}"
            for p in recipe_problems(recipe, text=text, artifacts_dir=artifacts_dir, schema=schema)
        )
        access = _get(_get(recipe, "componentconfiguration"), "accesscontrol") or {}
        for service in access.values():
            for policy_id in service or {}:
                if policy_id in owners:
                    problems.append(
                        f"{name}: policy id {policy_id!r} also used by {owners[policy_id]}"
                    )
                owners[policy_id] = name
    if problems:
        raise ConfigError("recipe check failed:\n  " + "\n  ".join(problems))


# -- building -------------------------------------------------------------------------------


def _digest(path: Path) -> str:
    """Greengrass artifact digest: base64 of the SHA-256 of the file."""
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def build_wheel(dest: Path) -> Path:
    """``pip wheel --no-deps`` of the project into ``dest``; returns the wheel."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dest)]
    if importlib.util.find_spec("wheel") and importlib.util.find_spec("setuptools"):
        cmd.append("--no-build-isolation")  # no download of the build backend when present
    with tempfile.TemporaryDirectory(prefix="ami-wheel-") as tmp:
        # Build from a copy of the sources so no build/ or egg-info litter lands in the tree.
        src = Path(tmp) / "src"
        shutil.copytree(
            ROOT,
            src,
            ignore=shutil.ignore_patterns(
                ".git",
                ".venv",
                "greengrass-build",
                "build",
                "dist",
                "*.egg-info",
                "__pycache__",
                ".pytest_cache",
                ".mypy_cache",
                ".ruff_cache",
                ".hypothesis",
                "tests",
                "bench",
                "var",
            ),
        )
        try:
            subprocess.run(
                [*cmd, str(src)], check=True, capture_output=True, text=True, timeout=600
            )
        except subprocess.CalledProcessError as exc:
            raise ConfigError(f"pip wheel failed:\n{exc.stderr[-2000:]}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ConfigError("pip wheel did not finish within 600 s") from exc
    wheels = sorted(dest.glob("ami_edge-*.whl"))
    if not wheels:
        raise ConfigError(f"pip wheel produced no ami_edge wheel in {dest}")
    return wheels[-1]


def constraints(extras: Sequence[str] = ()) -> str:
    """Pins (``name==version``) of the installed dependency closure of ami-edge[extras]."""
    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [("ami-edge", tuple(extras))]
    while todo:
        dist_name, dist_extras = todo.pop()
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        for raw in dist.requires or []:
            req = Requirement(raw)
            envs = [{"extra": e} for e in dist_extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            key = req.name.lower().replace("_", "-")
            if key in pins or key == "ami-edge":
                continue
            try:
                pins[key] = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                continue
            todo.append((req.name, tuple(req.extras)))
    lines = [f"{k}=={v}" for k, v in sorted(pins.items())]
    header = f"# constraints for ami-edge[{','.join(extras)}], pinned from the build environment\n"
    return header + "\n".join(lines) + "\n"


def _check_model(model_dir: Path) -> None:
    from edge_core.errors import ModelError
    from edge_core.training.card import (
        CARD_FILE,
        MODEL_FILE,
        ModelCard,
    )

    card_path, onnx_path = model_dir / CARD_FILE, model_dir / MODEL_FILE
    if not (card_path.is_file() and onnx_path.is_file()):
        raise ConfigError(
            f"no trained model in {model_dir} ({MODEL_FILE} and {CARD_FILE} are needed); "
            "train one (ami-edge train) or pass --skip-model"
        )
    try:
        card = ModelCard.read(card_path)
    except ModelError as exc:
        raise ConfigError(f"{card_path}: {exc}") from exc
    if card.onnx_file != MODEL_FILE:
        raise ConfigError(f"{card_path}: onnx_file is {card.onnx_file!r}, expected {MODEL_FILE}")
    if hashlib.sha256(onnx_path.read_bytes()).hexdigest() != card.onnx_sha256:
        raise ConfigError(f"{onnx_path} does not match onnx_sha256 in {card_path}")


def gdk_config(name: str, version: str, bucket: str, region: str) -> dict[str, Any]:
    """A GDK project file for one component, building through ``ami-edge build``."""
    return {
        "component": {
            name: {
                "author": "ami-edge contributors",
                "version": version,
                "build": {
                    "build_system": "custom",
                    "custom_build_command": [
                        "python",
                        "-m",
                        "edge_core.build",
                        "--component",
                        name,
                        "--out",
                        "greengrass-build",
                    ],
                },
                "publish": {"bucket": bucket, "region": region},
            }
        },
        "gdk_version": "1.6.2",
    }


def build(opts: BuildOptions) -> BuildResult:
    """Build artifacts and rendered recipes of the selected components (all by default)."""
    import yaml

    for v in (opts.version, opts.model_version):
        if not _SEMVER.match(v):
            raise ConfigError(f"version {v!r} is not semantic (major.minor.patch)")
    known = {c.name: c for c in COMPONENTS}
    unknown = [c for c in opts.components if c not in known]
    if unknown:
        raise ConfigError(f"unknown component(s) {', '.join(unknown)}")
    selected = [c for c in COMPONENTS if not opts.components or c.name in opts.components]
    out = opts.out
    artifacts_dir = out / "artifacts"
    result = BuildResult()
    wheel: Path | None = opts.wheel
    rendered: dict[str, tuple[Mapping[str, Any], str]] = {}
    for spec in selected:
        version = opts.model_version if spec.kind == "model" else opts.version
        target = artifacts_dir / spec.name / version
        if spec.kind == "model":
            model_dir = opts.model_dir if opts.model_dir.is_absolute() else ROOT / opts.model_dir
            if opts.skip_model:
                log.warning("skipping %s (--skip-model)", spec.name)
                result.skipped.append(spec.name)
                continue
            _check_model(model_dir)
            target.mkdir(parents=True, exist_ok=True)
            files = [
                shutil.copy2(model_dir / f, target / f) for f in ("model.onnx", "model-card.json")
            ]
            result.artifacts[spec.name] = [Path(f) for f in files]
            wheel_name = ""
        else:
            if wheel is None:
                wheel = build_wheel(out / "wheel")
            target.mkdir(parents=True, exist_ok=True)
            copied = Path(shutil.copy2(wheel, target / wheel.name))
            cons = target / "constraints.txt"
            cons.write_text(constraints(spec.extras), encoding="utf-8")
            result.artifacts[spec.name] = [copied, cons]
            wheel_name = wheel.name
        values = {
            "COMPONENT_NAME": spec.name,
            "COMPONENT_VERSION": version,
            "BUCKET": opts.bucket,
            "ARTIFACT_PREFIX": opts.prefix.strip("/") + "/" if opts.prefix.strip("/") else "",
            "REGION": opts.region,
            "ACCOUNT": opts.account,
            "SECRET_PREFIX": opts.secret_prefix,
            "WHEEL": wheel_name,
        }
        template = spec.template.read_text(encoding="utf-8")
        recipe = yaml.safe_load(render_template(template, values))
        for manifest in _get(recipe, "manifests") or []:
            for artifact in _get(manifest, "artifacts") or []:
                built = target / str(artifact["URI"]).rsplit("/", 1)[-1]
                if built.is_file():
                    artifact["Digest"] = _digest(built)
                    artifact["Algorithm"] = "SHA-256"
        text = yaml.safe_dump(recipe, sort_keys=False, width=100)
        rendered[spec.name] = (recipe, text)
        gdk_dir = out / "gdk" / spec.name
        gdk_dir.mkdir(parents=True, exist_ok=True)
        (gdk_dir / "recipe.yaml").write_text(template, encoding="utf-8")
        (gdk_dir / "gdk-config.json").write_text(
            json.dumps(gdk_config(spec.name, version, opts.bucket, opts.region), indent=2) + "\n",
            encoding="utf-8",
        )
    check_recipes(rendered, artifacts_dir=artifacts_dir)
    (out / "recipes").mkdir(parents=True, exist_ok=True)
    for name, (recipe, text) in rendered.items():
        path = out / "recipes" / f"{name}-{_get(recipe, 'componentversion')}.yaml"
        path.write_text(text, encoding="utf-8")
        result.recipes[name] = path
    if wheel is not None and opts.wheel is None:
        shutil.rmtree(out / "wheel", ignore_errors=True)
    return result


# -- command line ---------------------------------------------------------------------------


def _add_arguments(p: argparse.ArgumentParser) -> None:
    d = BuildOptions()
    p.add_argument("--out", type=Path, default=d.out, help="output folder (greengrass-build)")
    p.add_argument("--version", default=d.version, help="version of the Python components")
    p.add_argument(
        "--model-version",
        default=d.model_version,
        help="version of com.amiedge.AnomalyModel (major = feature-spec version)",
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=d.model_dir,
        help="folder with model.onnx and model-card.json",
    )
    p.add_argument(
        "--skip-model",
        action="store_true",
        help="build without the model component (no trained model yet)",
    )
    p.add_argument("--bucket", default=d.bucket, help="S3 bucket of the artifact URIs")
    p.add_argument("--prefix", default=d.prefix, help="key prefix inside the bucket")
    p.add_argument("--region", default=d.region, help="AWS region (secret ARNs)")
    p.add_argument("--account", default=d.account, help="AWS account id (secret ARNs)")
    p.add_argument(
        "--secret-prefix",
        default=d.secret_prefix,
        help="name prefix of the DLMS key secrets the concentrator may read",
    )
    p.add_argument(
        "--component",
        action="append",
        default=[],
        dest="components",
        help="build only this component (repeatable)",
    )


def _options(args: argparse.Namespace) -> BuildOptions:
    return BuildOptions(
        out=args.out,
        version=args.version,
        model_version=args.model_version,
        model_dir=args.model_dir,
        skip_model=args.skip_model,
        bucket=args.bucket,
        prefix=args.prefix,
        region=args.region,
        account=args.account,
        secret_prefix=args.secret_prefix,
        components=tuple(args.components),
    )


def _handler(args: argparse.Namespace) -> int:
    result = build(_options(args))
    for name, path in result.recipes.items():
        print(f"{name}: {path}")
    for name in result.skipped:
        print(f"{name}: skipped")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("build", help="build Greengrass component artifacts and recipes")
    _add_arguments(p)
    p.set_defaults(func=_handler)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edge_core.build`` (GDK's custom build command)."""
    parser = argparse.ArgumentParser(prog="python -m edge_core.build")
    _add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _handler(args)
    except ConfigError as exc:
        print(f"ami-edge build: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
