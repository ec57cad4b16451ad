"""Recipes, gdk-config and `ami-edge build`: GDK's schemas plus the project's stricter rules."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from edge_core.build import (
    COMPONENTS,
    ROOT,
    BuildOptions,
    build,
    check_recipes,
    gdk_config,
    lower_keys,
    recipe_problems,
    render_template,
)
from edge_core.errors import ConfigError
from tests.greengrass.conftest import make_model_dir

SCHEMAS = Path("reference") / "gdk-schemas"
NAMES = [c.name for c in COMPONENTS]


def load_schema(shared_dir: Path, name: str) -> dict[str, Any]:
    path = shared_dir / SCHEMAS / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return json.loads(path.read_text())


def rendered(out: Path) -> dict[str, tuple[dict[str, Any], str]]:
    recipes = {}
    for path in sorted((out / "recipes").glob("*.yaml")):
        text = path.read_text()
        recipe = yaml.safe_load(text)
        recipes[recipe["ComponentName"]] = (recipe, text)
    return recipes


def template(name: str) -> dict[str, Any]:
    values = dict.fromkeys(("BUCKET", "REGION", "ACCOUNT", "SECRET_PREFIX"), "x")
    values["ARTIFACT_PREFIX"] = "components/"
    values |= {"COMPONENT_NAME": name, "COMPONENT_VERSION": "1.0.0", "WHEEL": "w.whl"}
    text = render_template((ROOT / "recipes" / f"{name}.yaml").read_text(), values)
    return dict(yaml.safe_load(text))


# -- rendered recipes and gdk-config against GDK's schemas ------------------------------------


@pytest.mark.slow
@pytest.mark.shared
def test_rendered_recipes_validate_against_gdk_schema(
    built: tuple[Path, Any], shared_dir: Path
) -> None:

    schema = load_schema(shared_dir, "recipe_schema.json")
    recipes = rendered(built[0])
    assert sorted(recipes) == sorted(NAMES)
    for recipe, text in recipes.values():
        jsonschema.validate(lower_keys(recipe), schema)
        assert (
            recipe_problems(recipe, text=text, schema=schema, artifacts_dir=built[0] / "artifacts")
            == []
        )
    check_recipes(recipes, artifacts_dir=built[0] / "artifacts", schema=schema)


@pytest.mark.shared
def test_gdk_configs_validate(shared_dir: Path, tmp_path: Path) -> None:

    schema = load_schema(shared_dir, "config_schema.json")
    jsonschema.validate(json.loads((ROOT / "gdk-config.json").read_text()), schema)
    for name in NAMES:
        jsonschema.validate(gdk_config(name, "1.0.0", "b", "eu-west-1"), schema)
    two = gdk_config(NAMES[0], "1.0.0", "b", "r")
    two["component"] |= gdk_config(NAMES[1], "1.0.0", "b", "r")["component"]
    with pytest.raises(jsonschema.ValidationError):  # one component per gdk-config
        jsonschema.validate(two, schema)


@pytest.mark.slow
@pytest.mark.shared
def test_generated_gdk_projects_validate(built: tuple[Path, Any], shared_dir: Path) -> None:

    schema = load_schema(shared_dir, "config_schema.json")
    for name in NAMES:
        project = built[0] / "gdk" / name
        jsonschema.validate(json.loads((project / "gdk-config.json").read_text()), schema)
        assert (project / "recipe.yaml").is_file()


# -- the build ------------------------------------------------------------------------------


@pytest.mark.slow
def test_build_layout_versions_uris_and_digests(built: tuple[Path, Any]) -> None:
    out, result = built
    recipes = rendered(out)
    assert set(result.recipes) == set(NAMES)
    assert (out / "recipes" / "com.amiedge.Concentrator-1.2.3.yaml").is_file()
    assert (out / "recipes" / "com.amiedge.AnomalyModel-1.0.4.yaml").is_file()
    conc = recipes["com.amiedge.Concentrator"][0]
    artifacts = conc["Manifests"][0]["Artifacts"]
    wheel = next(a for a in artifacts if a["URI"].endswith(".whl"))
    assert wheel["URI"].startswith("s3://my-bucket/com.amiedge.Concentrator/1.2.3/ami_edge-")
    assert wheel["Algorithm"] == "SHA-256"
    model = recipes["com.amiedge.AnomalyModel"][0]
    assert "Lifecycle" not in model["Manifests"][0]
    names = {a["URI"].rsplit("/", 1)[-1] for a in model["Manifests"][0]["Artifacts"]}
    assert names == {"model.onnx", "model-card.json"}
    assert (out / "artifacts" / "com.amiedge.AnomalyModel" / "1.0.4" / "model.onnx").is_file()
    secrets = conc["ComponentConfiguration"]["accessControl"]["aws.greengrass.SecretManager"]
    (policy,) = secrets.values()
    assert policy["resources"] == [
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ami-edge/dlms/*"
    ]
    cons = (out / "artifacts" / "com.amiedge.Analytics" / "1.2.3" / "constraints.txt").read_text()
    assert "onnxruntime==" in cons
    cons_c = (
        out / "artifacts" / "com.amiedge.Concentrator" / "1.2.3" / "constraints.txt"
    ).read_text()
    assert "onnxruntime" not in cons_c
    assert "awsiotsdk==" in cons_c


def test_build_fails_clearly_without_a_model(tmp_path: Path) -> None:
    opts = BuildOptions(
        out=tmp_path / "out", model_dir=tmp_path / "none", components=("com.amiedge.AnomalyModel",)
    )
    with pytest.raises(ConfigError, match="--skip-model"):
        build(opts)


def test_build_skip_model_and_bad_digest(tmp_path: Path) -> None:

    res = build(
        BuildOptions(out=tmp_path / "a", skip_model=True, components=("com.amiedge.AnomalyModel",))
    )
    assert res.skipped == ["com.amiedge.AnomalyModel"]
    assert res.recipes == {}
    model = make_model_dir(tmp_path / "m")
    (model / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(ConfigError, match="onnx_sha256"):
        build(
            BuildOptions(
                out=tmp_path / "b", model_dir=model, components=("com.amiedge.AnomalyModel",)
            )
        )


def test_build_rejects_bad_version_and_unknown_component(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="semantic"):
        build(BuildOptions(out=tmp_path, version="1.2"))
    with pytest.raises(ConfigError, match="unknown component"):
        build(BuildOptions(out=tmp_path, components=("com.example.Nope",)))


def test_render_rejects_unknown_placeholder_and_keeps_recipe_variables() -> None:
    assert render_template("{iot:thingName} {A}", {"A": "1"}) == "{iot:thingName} 1"
    with pytest.raises(ConfigError, match="NOPE"):
        render_template("{NOPE}", {})


# -- the stricter rules, each with a recipe that breaks it ------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_templates_pass_the_rules(name: str) -> None:
    assert recipe_problems(template(name)) == []


def test_templates_policy_ids_unique_and_least_privilege() -> None:
    recipes = {n: (template(n), "") for n in NAMES}
    check_recipes(recipes)
    access = template("com.amiedge.Concentrator")["ComponentConfiguration"]["accessControl"]
    mqtt = access["aws.greengrass.ipc.mqttproxy"]
    resources = {op: p["resources"] for p in mqtt.values() for op in p["operations"]}
    assert resources["aws.greengrass#SubscribeToIoTCore"] == ["cmd/ami/{iot:thingName}/read/req"]
    assert "cmd/ami/{iot:thingName}/read/res" in resources["aws.greengrass#PublishToIoTCore"]
    assert all("{iot:thingName}" in r for r in resources["aws.greengrass#PublishToIoTCore"])


def conc() -> dict[str, Any]:
    return copy.deepcopy(template("com.amiedge.Concentrator"))


def lifecycle(r: dict[str, Any]) -> dict[str, Any]:
    return dict(r["Manifests"][0]["Lifecycle"])


def test_rule_unknown_lifecycle_step() -> None:
    r = conc()
    r["Manifests"][0]["Lifecycle"]["Instal"] = r["Manifests"][0]["Lifecycle"].pop("Install")
    assert any("Instal: unknown lifecycle step" in p for p in recipe_problems(r))


def test_rule_unknown_step_key() -> None:
    r = conc()
    r["Manifests"][0]["Lifecycle"]["Run"]["TimeOutSeconds"] = "5"
    assert any("unknown step key" in p for p in recipe_problems(r))


def test_rule_run_xor_startup() -> None:
    r = conc()
    r["Manifests"][0]["Lifecycle"]["Startup"] = {"Script": "true"}
    assert any("exclusive" in p for p in recipe_problems(r))


def test_rule_install_needs_timeout() -> None:
    r = conc()
    del r["Manifests"][0]["Lifecycle"]["Install"]["Timeout"]
    assert any("explicit Timeout" in p for p in recipe_problems(r))


def test_rule_configuration_pointer_resolves() -> None:
    r = conc()
    r["Manifests"][0]["Lifecycle"]["Setenv"]["X"] = "{configuration:/greengrass/nope}"
    assert any("/greengrass/nope" in p for p in recipe_problems(r))


def test_rule_numbers_are_strings() -> None:
    r = conc()
    r["ComponentConfiguration"]["DefaultConfiguration"]["spool"]["quota_mb"] = 512
    assert any("spool/quota_mb: number" in p for p in recipe_problems(r))


def test_rule_artifact_uri_matches_built_files(tmp_path: Path) -> None:
    r = conc()
    target = tmp_path / "com.amiedge.Concentrator" / "1.0.0"
    target.mkdir(parents=True)
    (target / "w.whl").write_bytes(b"wheel")
    (target / "constraints.txt").write_text("")
    assert recipe_problems(r, artifacts_dir=tmp_path) == []
    (target / "constraints.txt").unlink()
    assert any("no built artifact" in p for p in recipe_problems(r, artifacts_dir=tmp_path))
    r = conc()
    r["Manifests"][0]["Artifacts"][0]["Digest"] = "AAAA"
    (target / "constraints.txt").write_text("")
    assert any("digest" in p for p in recipe_problems(r, artifacts_dir=tmp_path))


def test_rule_unique_policy_ids_across_components() -> None:
    a = conc()
    b = template("com.amiedge.Analytics")
    pid = next(iter(a["ComponentConfiguration"]["accessControl"]["aws.greengrass.ipc.pubsub"]))
    b["ComponentConfiguration"]["accessControl"]["aws.greengrass.ipc.pubsub"][pid] = {
        "operations": ["aws.greengrass#SubscribeToTopic"],
        "resources": ["x"],
    }
    with pytest.raises(ConfigError, match="also used by"):
        check_recipes({"a": (a, ""), "b": (b, "")})


def test_rule_recipe_size() -> None:
    r = conc()
    assert recipe_problems(r, text="x" * 15_999) == []
    assert any("size" in p for p in recipe_problems(r, text="x" * 16_000))


@pytest.mark.shared
def test_schema_catches_what_it_catches_and_misses_a_misspelled_step(shared_dir: Path) -> None:
    """GDK's schema alone does not see a misspelled lifecycle step; our rule does."""
    schema = load_schema(shared_dir, "recipe_schema.json")
    r = conc()
    r["Manifests"][0]["Lifecycle"]["Rnu"] = r["Manifests"][0]["Lifecycle"].pop("Run")
    problems = recipe_problems(r, schema=schema)
    assert not [p for p in problems if p.startswith("schema:")]
    assert any("Rnu" in p for p in problems)
    bad = conc()
    bad["RecipeFormatVersion"] = "2019-01-01"
    assert any(p.startswith("schema:") for p in recipe_problems(bad, schema=schema))
