"""What the pinned Stripe API accepts, read from the installed SDK itself (no list is copied here).

The SDK in uv.lock is generated from the OpenAPI spec of the API version it pins. Each service method
(`client.v1.payment_intents.create`, …) names its HTTP method, its URL template and its typed params
(`PaymentIntentCreateParams`, a TypedDict with nested TypedDicts, Required and NotRequired keys). This
module walks the client's services, builds the route table from them, and checks a decoded request
body against the params TypedDict of its route, the way Stripe answers bad input: 400
`invalid_request_error` with `parameter_unknown` or `parameter_missing`.

Bumping the SDK re-reads all of it: a parameter the new API version drops makes the same tests fail.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any, ForwardRef

import stripe
import typing_extensions
from stripe._request_options import RequestOptions
from stripe._stripe_service import StripeService

_REQUEST_CALL = re.compile(r"self\._request\(\s*\"(\w+)\",\s*\"(/v1/[^\"]+)\"")
_PARAMS_ANNOTATION = re.compile(r"(\w+Params)\b")
# Keys of RequestOptions are client options (headers), never sent as body parameters.
_OPTION_KEYS = frozenset(RequestOptions.__annotations__)


@dataclass(frozen=True)
class Route:
    method: str  # "GET", "POST", "DELETE"
    template: str  # "/v1/payment_intents/{intent}/cancel"
    pattern: re.Pattern[str]
    params: type  # the TypedDict class
    sdk_method: str  # "PaymentIntentService.cancel", for messages


@dataclass(frozen=True)
class Violation:
    code: str  # "parameter_unknown" | "parameter_missing" | "parameter_invalid"
    param: str  # "payment_method_types", "card[exp_month]"
    message: str

    def as_stripe_error(self) -> dict[str, Any]:
        return {
            "error": {
                "type": "invalid_request_error",
                "code": self.code,
                "param": self.param,
                "message": self.message,
                "doc_url": f"https://docs.stripe.com/error-codes/{self.code.replace('_', '-')}",
            }
        }


def _services(root: StripeService) -> typing.Iterator[StripeService]:
    """Every service reachable from client.v1 (nested ones too: v1.checkout.sessions, …)."""
    seen: set[type] = set()
    stack = [root]
    while stack:
        service = stack.pop()
        if type(service) in seen:
            continue
        seen.add(type(service))
        yield service
        for cls in type(service).__mro__:
            for name in getattr(cls, "__annotations__", {}):
                if name.startswith("_"):
                    continue
                child = getattr(service, name, None)
                if isinstance(child, StripeService):
                    stack.append(child)


@functools.cache
def routes() -> tuple[Route, ...]:
    client = stripe.StripeClient("sk_test_contract")
    found: dict[tuple[str, str], Route] = {}
    for service in _services(client.v1):
        for attr, func in inspect.getmembers(type(service), inspect.isfunction):
            if attr.startswith("_") or attr.endswith("_async"):
                continue
            try:
                source = inspect.getsource(func)
            except (OSError, TypeError):
                continue
            call = _REQUEST_CALL.search(source)
            if call is None:
                continue
            annotation = inspect.signature(func).parameters.get("params")
            if annotation is None:
                continue
            name = _PARAMS_ANNOTATION.search(str(annotation.annotation))
            if name is None:
                continue
            params = getattr(stripe.params, name[1], None)
            if params is None:
                continue
            method, template = call[1].upper(), call[2]
            regex = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$"
            found.setdefault(
                (method, template),
                Route(method, template, re.compile(regex), params, f"{type(service).__name__}.{attr}"),
            )
    # A literal path ("/v1/payment_intents/search") wins over a template ("/v1/payment_intents/{intent}").
    return tuple(sorted(found.values(), key=lambda r: (r.template.count("{"), -len(r.template))))


def route_for(method: str, path: str) -> Route | None:
    for route in routes():
        if route.method == method.upper() and route.pattern.match(path):
            return route
    return None


# --- Types -----------------------------------------------------------------------------------


def _namespace(cls: type) -> dict[str, Any]:
    ns = dict(vars(typing))
    ns.update(vars(typing_extensions))
    ns.update(vars(sys.modules[cls.__module__]))
    return ns


def _resolve(annotation: Any, ns: dict[str, Any]) -> Any:
    if isinstance(annotation, str):
        annotation = eval(annotation, ns)
    if isinstance(annotation, ForwardRef):
        annotation = eval(annotation.__forward_arg__, ns)
    origin = typing.get_origin(annotation)
    if origin in (
        typing.NotRequired,
        typing.Required,
        typing_extensions.NotRequired,
        typing_extensions.Required,
    ):
        return _resolve(typing.get_args(annotation)[0], ns)
    return annotation


@dataclass
class _Shape:
    typeddicts: list[type]
    lists: list[Any]  # element annotations
    mapping: bool  # Dict[str, …] / UntypedStripeObject: free keys
    literals: set[str]
    free_scalar: bool  # str, int, bool, … (anything not a Literal)
    scalars: set[Any] = dataclasses.field(default_factory=set)  # which of them: {int}, {bool}, {str, int}, …


def _shape(annotation: Any, ns: dict[str, Any]) -> _Shape:
    shape = _Shape([], [], False, set(), False)
    todo = [annotation]
    while todo:
        t = _resolve(todo.pop(), ns)
        origin = typing.get_origin(t)
        if origin in (typing.Union, types.UnionType):
            todo.extend(typing.get_args(t))
        elif origin in (typing.Literal, typing_extensions.Literal):
            shape.literals.update(str(v) for v in typing.get_args(t))
        elif typing_extensions.is_typeddict(t):
            shape.typeddicts.append(t)
        elif origin is list:  # typing.List[X] has origin list too
            shape.lists.append(typing.get_args(t)[0])
        elif (
            origin in (dict, dict)
            or t is dict
            or (isinstance(t, type) and t.__name__ == "UntypedStripeObject")
            or (origin is not None and getattr(origin, "__name__", "") == "UntypedStripeObject")
        ):
            shape.mapping = True
        else:
            shape.free_scalar = True
            shape.scalars.add(t)
    return shape


def _fields(cls: type) -> tuple[dict[str, Any], frozenset[str], dict[str, Any]]:
    ns = _namespace(cls)
    fields = {k: v for k, v in cls.__annotations__.items() if k not in _OPTION_KEYS}
    # TypedDict subclasses merge their parents' annotations; walk the MRO for inherited ones.
    for base in cls.__mro__[1:]:
        for k, v in getattr(base, "__annotations__", {}).items():
            if k not in _OPTION_KEYS:
                fields.setdefault(k, v)
    required = frozenset(k for k in getattr(cls, "__required_keys__", ()) if k not in _OPTION_KEYS)
    return fields, required, ns


def check(params_cls: type, body: dict[str, Any]) -> list[Violation]:
    """Every parameter Stripe would refuse in `body` (decoded form), against the SDK's TypedDict."""
    out: list[Violation] = []
    _check_dict(params_cls, body, prefix="", out=out)
    return out


def _name(prefix: str, key: str) -> str:
    return f"{prefix}[{key}]" if prefix else key


def _check_dict(cls: type, value: dict[str, Any], *, prefix: str, out: list[Violation]) -> None:
    fields, required, ns = _fields(cls)
    for key, sub in value.items():
        name = _name(prefix, key)
        if key not in fields:
            out.append(Violation("parameter_unknown", name, f"Received unknown parameter: {name}"))
            continue
        _check_value(_shape(fields[key], ns), sub, name=name, ns=ns, out=out)
    for key in sorted(required - value.keys()):
        name = _name(prefix, key)
        out.append(Violation("parameter_missing", name, f"Missing required param: {name}."))


def _check_value(shape: _Shape, value: Any, *, name: str, ns: dict[str, Any], out: list[Violation]) -> None:
    if isinstance(value, dict):
        if shape.typeddicts:
            # A union of hashes: the first one the value fits, else report against the first.
            trials = []
            for td in shape.typeddicts:
                errors: list[Violation] = []
                _check_dict(td, value, prefix=name, out=errors)
                if not errors:
                    return
                trials.append(errors)
            out.extend(trials[0])
        elif not shape.mapping:
            out.append(Violation("parameter_invalid", name, f"Invalid {name}: must be a scalar, not a hash"))
        return
    if isinstance(value, list):
        if not shape.lists:
            out.append(Violation("parameter_invalid", name, f"Invalid {name}: must not be an array"))
            return
        element = _shape(shape.lists[0], ns)
        for i, item in enumerate(value):
            _check_value(element, item, name=f"{name}[{i}]", ns=ns, out=out)
        return
    if shape.literals and not (shape.free_scalar or shape.typeddicts or shape.lists or shape.mapping):
        if str(value) not in shape.literals:
            out.append(
                Violation(
                    "parameter_invalid",
                    name,
                    f"Invalid {name}: must be one of {', '.join(sorted(shape.literals))}",
                )
            )
    elif shape.free_scalar and not (shape.literals or shape.typeddicts or shape.lists or shape.mapping):
        # Form values are text; Stripe parses integers and booleans strictly ("12.5", "٣", "yes" are refused).
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if shape.scalars <= {int} and not (text.isascii() and re.fullmatch(r"-?\d+", text)):
            out.append(Violation("parameter_invalid", name, f"Invalid integer: {text}"))
        elif shape.scalars <= {bool} and text not in ("true", "false"):
            out.append(Violation("parameter_invalid", name, f"Invalid boolean: {text}"))
    elif not (shape.free_scalar or shape.literals) and value != "":
        kind = "a hash" if (shape.typeddicts or shape.mapping) else "an array"
        out.append(Violation("parameter_invalid", name, f"Invalid {name}: must be {kind}"))


# --- Stripe's form encoding --------------------------------------------------------------------

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`a[b][0][c]=v` pairs (as the SDK encodes them) back into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            root[key] = value
            continue
        path = [match[1], *re.findall(r"\[([^\[\]]*)\]", match[2])]
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[path[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _lists(v) for k, v in node.items()}
    if converted and all(k.isascii() and k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted
