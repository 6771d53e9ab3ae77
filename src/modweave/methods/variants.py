"""Method variants written inline: `ana[in_adapters=false,gate=false]` -> `("ana", {"in_adapters": False,
"gate": False})`, and a stable, filesystem-safe run label for a variant (`ana-no_gate-no_in_adapters`).

Syntax: `name` or `name[key=value,key=value,...]`. Values are YAML (`false`, `0.02`, `authors`, `[q, k]`,
`{enabled: false}`); commas inside brackets, braces or quotes do not split. A dotted key sets a nested
setting (`gate_noise.enabled=false` -> `{"gate_noise": {"enabled": False}}`). Parsing knows nothing of
the registered methods: `check_variant` also checks the name and the settings against the method.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import yaml

from ..fields import ConfigError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_OPEN, _CLOSE = "[{(", "]})"
#: labels longer than this keep their start and end in a short hash (file names stay well under 255 bytes)
MAX_LABEL = 96


def _scan(text: str, sep: str = ",") -> tuple[list[int], bool]:
    """Indices of `sep` outside brackets, braces, parentheses and quotes, and whether those balance."""
    cuts, depth, quote, balanced = [], 0, None, True
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            balanced = balanced and depth >= 0
        elif ch == sep and depth == 0:
            cuts.append(i)
    return cuts, balanced and depth == 0 and quote is None


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """`text` split at `sep` outside brackets, braces, parentheses and quotes:
    `"ana,ana[a=1,b=2],lora"` -> `["ana", "ana[a=1,b=2]", "lora"]` (parts stripped, empty parts kept)."""
    cuts, _ = _scan(text, sep)
    bounds = [-1, *cuts, len(text)]
    return [text[a + 1:b].strip() for a, b in zip(bounds, bounds[1:])]


def split_variants(text: str) -> list[str]:
    """A comma-separated list of variants (`--methods ana,ana[gate=false]`) -> the variant strings;
    ConfigError on an empty entry."""
    parts = split_top_level(text)
    for i, part in enumerate(parts):
        if not part:
            raise ConfigError(f"method list '{text}': entry {i + 1} is empty")
    return parts


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """`"ana[in_adapters=false,gate=false]"` -> `("ana", {"in_adapters": False, "gate": False})`;
    ConfigError (one line, naming the bad part) on a malformed variant."""
    raw = text.strip()
    name, bracket, rest = raw.partition("[")
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise ConfigError(f"method variant '{text}': '{name}' is not a method name")
    if not bracket:
        return name, {}
    if not rest.endswith("]"):
        raise ConfigError(f"method variant '{text}': settings must end with ']'")
    body = rest[:-1]
    if not body.strip():
        raise ConfigError(f"method variant '{text}': empty settings '[]' (write just '{name}')")
    if _depth_error(body):
        raise ConfigError(f"method variant '{text}': unbalanced brackets or quotes in '{body}'")
    settings: dict[str, Any] = {}
    given: list[str] = []
    for part in split_top_level(body):
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq:
            raise ConfigError(f"method variant '{text}': '{part}' is not key=value")
        if not _KEY.fullmatch(key):
            raise ConfigError(f"method variant '{text}': '{key}' is not a setting name")
        if not value:
            raise ConfigError(f"method variant '{text}': '{key}' has no value")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"method variant '{text}': value of '{key}' is not YAML: {value}") from None
        _put(settings, given, key, parsed, text)
    return name, settings


def _depth_error(body: str) -> bool:
    return not _scan(body)[1]


def _put(settings: dict[str, Any], given: list[str], key: str, value: Any, text: str) -> None:
    """Set dotted `key` in `settings`; ConfigError when it, a parent or a child of it was given already."""
    for other in given:
        if other == key or other.startswith(key + ".") or key.startswith(other + "."):
            also = f" (with '{other}')" if other != key else ""
            raise ConfigError(f"method variant '{text}': '{key}' is given twice{also}")
    given.append(key)
    *parents, leaf = key.split(".")
    node = settings
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def check_variant(text: str) -> tuple[str, dict[str, Any]]:
    """`parse_variant`, then the method must exist and the settings must pass its `check_settings`
    (the error names the variant). Returns the name and the settings AS GIVEN (not completed), which
    is what `variant_label` and a stage's `settings` take."""
    from . import get_method

    name, settings = parse_variant(text)
    try:
        get_method(name).check_settings(settings, where=name)
    except ValueError as err:  # an unknown method (the registry's error) or a bad setting (ConfigError)
        raise ConfigError(f"method variant '{text}': {err}") from None
    return name, settings


def _flat(settings: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "+".join(_word(v) for v in value) or "none"
    if isinstance(value, dict):
        return "none"  # only an empty mapping reaches here (`_flat` opens the others)
    return str(value)


def variant_label(name: str, settings: dict[str, Any] | None = None) -> str:
    """A stable, readable, filesystem-safe run name: the method, then each setting in key order:
    `true` -> `key`, `false` -> `no_key`, otherwise `key=value` (lists joined by `+`, nested keys
    dotted). `variant_label("ana", {"in_adapters": False, "gate": False})` -> `ana-no_gate-no_in_adapters`.
    Characters outside `[A-Za-z0-9._=+-]` become `_`; a label over MAX_LABEL characters is shortened
    with a hash of the full one (so distinct variants keep distinct labels)."""
    parts = [name]
    for key, value in sorted(_flat(settings or {})):
        if value is True:
            parts.append(key)
        elif value is False:
            parts.append(f"no_{key}")
        else:
            parts.append(f"{key}={_word(value)}")
    label = re.sub(r"[^A-Za-z0-9._=+\-]", "_", "-".join(parts))
    if len(label) > MAX_LABEL:
        digest = hashlib.sha256(label.encode()).hexdigest()[:10]
        label = f"{label[:MAX_LABEL - 11]}-{digest}"
    return label
