"""Run a function of template.yaml in-process on an event, the way Lambda would, without Docker (`make invoke`).

    python -m infra.invoke IngestFunction events/sqs_s3_put.json [--put images/astronaut.jpg=tests/data/astronaut.jpg]

From the template it takes the function's Handler and CodeUri, its Layers (each layer's source directory goes on
sys.path, as Lambda extracts layers to /opt and puts /opt/python on the path; the dependency layers' packages come
from the virtualenv, which holds the same pinned versions), Timeout and MemorySize (for the context object), and
its Environment (Globals merged): !Ref of a parameter is its default, !Ref of the bucket is the local bucket, !Ref of
the copies and details queues and the event bus are the local stack's (none, so no copy check or details are queued
and no event put, with an endpoint of your own), and the model layer is its source directory (so PICTRACE_MODEL_DIR is
layers/model/model and nothing is fetched).

The S3 and SQS endpoints are a fresh local stack (infra.local.LocalStack, bucket pictrace-local as in events/)
unless AWS_ENDPOINT_URL_S3 is set, in which case that endpoint and PICTRACE_BUCKET (default pictrace-local) are
used. --put uploads files first (the events name images/astronaut.jpg). Prints the handler's result as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.local import ACCOUNT, ROOT, LambdaContext, LocalStack, load_handler

logger = logging.getLogger("pictrace.invoke")
DEFAULT_BUCKET = "pictrace-local"


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation's short tags (!Ref, !Sub, ...) as their long forms."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path = ROOT / "template.yaml") -> dict[str, Any]:
    """template.yaml with intrinsic functions as dicts."""
    with path.open(encoding="utf-8") as fh:
        template: dict[str, Any] = yaml.load(fh, Loader=CfnLoader)  # a SafeLoader subclass
    return template


@dataclass
class FunctionSpec:
    """What Lambda would set up for one function of the template, resolved for a local run."""

    name: str
    handler_file: Path
    handler_name: str
    paths: list[Path]
    environment: dict[str, str]
    timeout: int = 3
    memory: int = 128
    layers: list[str] = field(default_factory=list)


class Resolver:
    """Resolves the intrinsic functions PicTrace's environment uses, for a local run."""

    def __init__(self, template: dict[str, Any], bucket: str, local: dict[str, str] | None = None) -> None:
        self.template = template
        self.bucket = bucket
        self.local = local or {}  # what the local stack has for some resources (logical id -> its Ref)
        self.params = {k: v.get("Default", "") for k, v in template.get("Parameters", {}).items()}

    def ref(self, name: str) -> str:
        if name in self.params:
            value = self.params[name]
            return ",".join(value) if isinstance(value, list) else str(value)
        resource = self.template["Resources"].get(name)
        if resource is None:
            return {"AWS::Region": "us-east-1", "AWS::AccountId": ACCOUNT, "AWS::StackName": "pictrace"}.get(name, name)
        if resource["Type"] == "AWS::S3::Bucket":
            return self.bucket
        if resource["Type"] in ("AWS::SQS::Queue", "AWS::Events::EventBus"):
            return self.local.get(name, "")  # a queue or bus the local run has, or none
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            return str(ROOT / resource["Properties"]["ContentUri"])
        return name

    def condition(self, name: str) -> bool:
        """A template condition made of Fn::Equals, Fn::Not, Fn::And, Fn::Or and conditions over parameters."""

        def holds(expr: Any) -> bool:
            for key in ("Condition", "Fn::Condition"):  # !Condition, as the loader reads it
                if isinstance(expr, dict) and key in expr:
                    return self.condition(expr[key])
            if isinstance(expr, dict) and "Fn::Not" in expr:
                return not holds(expr["Fn::Not"][0])
            if isinstance(expr, dict) and "Fn::And" in expr:
                return all(holds(e) for e in expr["Fn::And"])
            if isinstance(expr, dict) and "Fn::Or" in expr:
                return any(holds(e) for e in expr["Fn::Or"])
            if isinstance(expr, dict) and "Fn::Equals" in expr:
                a, b = expr["Fn::Equals"]
                return self.value(a) == self.value(b)
            raise ValueError(f"cannot evaluate condition {expr!r} locally")

        return holds(self.template["Conditions"][name])

    def chosen(self, value: Any) -> Any:
        """The value with its Fn::If replaced by the branch the template's conditions pick (nested ones too)."""
        while isinstance(value, dict) and "Fn::If" in value:
            condition, when_true, when_false = value["Fn::If"]
            value = when_true if self.condition(condition) else when_false
        return value

    def layer(self, value: Any) -> str | None:
        """The logical id of a function's layer entry (a Ref, or an Fn::If of Refs); None for AWS::NoValue."""
        name: str = self.chosen(value)["Ref"]
        return None if name == "AWS::NoValue" else name

    def optional(self, value: Any) -> str | None:
        """value(), or None where it resolves to AWS::NoValue (CloudFormation then leaves the key out)."""
        value = self.chosen(value)
        return None if value == {"Ref": "AWS::NoValue"} else self.value(value)

    def value(self, value: Any) -> str:
        value = self.chosen(value)
        if isinstance(value, dict) and "Ref" in value:
            return self.ref(value["Ref"])
        if isinstance(value, dict) and "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            return re.sub(r"\$\{([^}!.]+)\}", lambda m: self.ref(m.group(1)), text)
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            return ".".join(value["Fn::GetAtt"])
        if isinstance(value, (dict, list)):
            raise ValueError(f"cannot resolve {value!r} locally")
        return str(value)


def function_spec(
    template: dict[str, Any], name: str, bucket: str, local: dict[str, str] | None = None
) -> FunctionSpec:
    """Handler, code, layers and environment of a function, with the Globals merged as SAM merges them; local: the
    Refs of the queues and buses the local stack has (else none)."""
    resources = template["Resources"]
    if resources.get(name, {}).get("Type") != "AWS::Serverless::Function":
        functions = sorted(k for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function")
        raise SystemExit(f"{name} is not a function of template.yaml; functions: {', '.join(functions)}")
    glob = template.get("Globals", {}).get("Function", {})
    props = resources[name]["Properties"]
    resolver = Resolver(template, bucket, local)
    module, _, handler = props.get("Handler", glob.get("Handler", "")).rpartition(".")
    code = ROOT / props["CodeUri"]
    layers = [ref for layer in glob.get("Layers", []) + props.get("Layers", []) if (ref := resolver.layer(layer))]
    # Lambda: /var/task (the code) first, then /opt/python (the layers, extracted in order; later ones win)
    paths = [code] + [ROOT / resources[layer]["Properties"]["ContentUri"] for layer in reversed(layers)]
    variables = {
        **glob.get("Environment", {}).get("Variables", {}),
        **props.get("Environment", {}).get("Variables", {}),
    }
    environment = {key: v for key, value in variables.items() if (v := resolver.optional(value)) is not None}
    model_layer = variables.get("PICTRACE_MODEL_LAYER")
    if isinstance(model_layer, dict) and "Ref" in model_layer:
        # the functions fetch the model layer's archive at cold start; locally its source directory is the model
        environment["PICTRACE_MODEL_DIR"] = str(Path(resolver.ref(model_layer["Ref"])) / "model")
        environment.pop("PICTRACE_MODEL_LAYER")
    return FunctionSpec(
        name=name,
        handler_file=code / (module.replace(".", "/") + ".py"),
        handler_name=handler,
        paths=paths,
        environment=environment,
        timeout=int(resolver.value(props.get("Timeout", glob.get("Timeout", 3)))),
        memory=int(resolver.value(props.get("MemorySize", glob.get("MemorySize", 128)))),
        layers=layers,
    )


def invoke(name: str, event: dict[str, Any], puts: dict[str, Path] | None = None) -> Any:
    """Run the function on the event against the local (or given) S3 endpoint; returns the handler's result."""
    template = load_template()
    stack: LocalStack | None = None
    if not os.environ.get("AWS_ENDPOINT_URL_S3"):
        stack = LocalStack(bucket=DEFAULT_BUCKET).start()  # sets AWS_ENDPOINT_URL_S3 etc. in os.environ
        logger.info("local stack at %s, bucket %s", stack.endpoint, stack.bucket)
    bucket = os.environ.get("PICTRACE_BUCKET", DEFAULT_BUCKET) if stack is None else stack.bucket
    try:
        local = stack.refs() if stack is not None else {}
        spec = function_spec(template, name, bucket, local)
        os.environ.update(spec.environment)
        os.environ.setdefault("AWS_LAMBDA_FUNCTION_NAME", name)
        for path in reversed(spec.paths):
            if str(path) not in sys.path:
                sys.path.insert(0, str(path))
        if puts:
            import boto3

            s3 = boto3.client("s3")
            for key, file in puts.items():
                s3.put_object(Bucket=bucket, Key=key, Body=file.read_bytes())
        handler = load_handler(spec.handler_file, spec.handler_name, fresh=True)
        context = LambdaContext(
            function_name=name,
            memory_limit_in_mb=spec.memory,
            timeout_ms=spec.timeout * 1000,
            invoked_function_arn=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}",
        )
        return handler(event, context)
    finally:
        if stack is not None:
            stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("function", help="logical id of a function in template.yaml, e.g. IngestFunction")
    parser.add_argument("event", type=Path, help="event file, e.g. events/sqs_s3_put.json")
    parser.add_argument("--put", action="append", default=[], metavar="KEY=FILE", help="upload FILE to KEY first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    puts = {}
    for item in args.put:
        key, sep, file = item.partition("=")
        if not sep or not Path(file).is_file():
            parser.error(f"--put wants KEY=FILE with an existing file, got {item!r}")
        puts[key] = Path(file)
    event = json.loads(args.event.read_text())
    result = invoke(args.function, event, puts)
    print(json.dumps(result, default=str))  # one line, after anything the handler printed (EMF metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
