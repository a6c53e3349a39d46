"""The ``alerts:`` and ``guard:`` sections of ``agentwatch.yaml``: destinations, routes, timing, agent pauses.

Secrets (a Slack webhook URL, a PagerDuty routing key, a webhook signing secret) are given either in the
file (``url:``, kept as pydantic ``SecretStr`` so they never print) or, better, as the name of an
environment variable (``url_env:``) read when a notification is sent.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, StringConstraints, model_validator

from agentwatch.core.config_file import Where, did_you_mean
from agentwatch.core.durations import parse_duration_text
from agentwatch.core.errors import ConfigError
from agentwatch.core.severity import Severity

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
MATCH_KEYS = ("check", "severity", "agent_id", "object", "field", "action")


def _duration(value: Any) -> Any:
    return parse_duration_text(value) if isinstance(value, str) else value


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class _Secrets(BaseModel):
    """A value given inline or through an environment variable, resolved only when it is used."""

    model_config = ConfigDict(extra="forbid")
    # At most 30 s: a delivery holds its outbox row for two minutes, and httpx applies the timeout to the
    # connect, write and read phases one after the other.
    timeout: Duration = Field(timedelta(seconds=10), gt=timedelta(0), le=timedelta(seconds=30),
                              description="How long one HTTP request may take (at most 30s).")

    def _resolve(self, name: str, destination: str, inline: SecretStr | None, env: str | None) -> str:
        if inline is not None:
            return inline.get_secret_value()
        value = os.environ.get(env or "")
        if not value:
            raise ConfigError(f"destination {destination!r}: environment variable {env} is not set; set it to the "
                              f"{name} in the environment of agentwatch")
        return value


def _one_of(model: BaseModel, inline: str, env: str) -> None:
    if (getattr(model, inline) is None) == (getattr(model, env) is None):
        raise ValueError(f"give exactly one of {inline} or {env} (the name of an environment variable holding it)")


class SlackDestination(_Secrets):
    """A Slack incoming webhook: messages with the summary, severity, subject, key numbers and a link."""

    type: Literal["slack"]
    url: SecretStr | None = Field(None, description="The webhook URL (a secret: prefer url_env).")
    url_env: str | None = Field(None, description="Environment variable holding the webhook URL.")

    @model_validator(mode="after")
    def _exactly_one(self) -> SlackDestination:
        _one_of(self, "url", "url_env")
        return self

    def endpoint(self, name: str) -> str:
        return self._resolve("webhook URL", name, self.url, self.url_env)


class PagerDutyDestination(_Secrets):
    """PagerDuty Events API v2: trigger, acknowledge and resolve with one dedup_key per incident group."""

    type: Literal["pagerduty"]
    routing_key: SecretStr | None = Field(None, description="The integration's routing key (prefer routing_key_env).")
    routing_key_env: str | None = Field(None, description="Environment variable holding the routing key.")
    url: str = Field(PAGERDUTY_EVENTS_URL, description="The Events API endpoint.")

    @model_validator(mode="after")
    def _exactly_one(self) -> PagerDutyDestination:
        _one_of(self, "routing_key", "routing_key_env")
        return self

    def endpoint(self, name: str) -> str:
        return self.url

    def key(self, name: str) -> str:
        return self._resolve("routing key", name, self.routing_key, self.routing_key_env)


class WebhookDestination(_Secrets):
    """Any HTTP endpoint: the whole notification as JSON, signed with HMAC-SHA256 of the body."""

    type: Literal["webhook"]
    url: SecretStr | None = Field(None, description="The endpoint (it may embed a token: prefer url_env).")
    url_env: str | None = Field(None, description="Environment variable holding the endpoint.")
    secret: SecretStr | None = Field(None, description="The signing secret (prefer secret_env).")
    secret_env: str | None = Field(None, description="Environment variable holding the signing secret.")

    @model_validator(mode="after")
    def _exactly_one(self) -> WebhookDestination:
        _one_of(self, "url", "url_env")
        if self.secret is not None and self.secret_env is not None:
            raise ValueError("give secret or secret_env, not both")
        return self

    def endpoint(self, name: str) -> str:
        return self._resolve("endpoint URL", name, self.url, self.url_env)

    def signing_secret(self, name: str) -> str | None:
        if self.secret is None and self.secret_env is None:
            return None
        return self._resolve("signing secret", name, self.secret, self.secret_env)


Destination = Annotated[SlackDestination | PagerDutyDestination | WebhookDestination, Field(discriminator="type")]


class Route(BaseModel):
    """Incidents matching every key of `match` go to `destinations`; the first matching route wins unless it
    says ``continue: true``. Values are shell-style patterns (``schema.*``) or lists of them."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    match: dict[Literal["check", "severity", "agent_id", "object", "field", "action"], str | list[str]] = Field(
        default_factory=dict, description="Incident property -> pattern(s); agent_id matches any agent named.")
    destinations: list[str] = Field(description="Names under alerts.destinations.")
    continue_: bool = Field(False, alias="continue", description="Also try the routes after this one.")
    repeat_interval: Duration | None = Field(None, ge=timedelta(minutes=1),
                                             description="Overrides alerts.repeat_interval for this route.")

    def matches(self, properties: dict[str, list[str]]) -> bool:
        """True when every key's pattern matches one of the incident's values for it."""
        for key, patterns in self.match.items():
            wanted = [patterns] if isinstance(patterns, str) else patterns
            if not any(fnmatchcase(value, p) for value in properties.get(key, []) for p in wanted):
                return False
        return True


class DeliveryConfig(BaseModel):
    """How hard the outbox tries before it marks a notification failed."""

    model_config = ConfigDict(extra="forbid")
    max_attempts: int = Field(12, ge=1, le=1000, description="Attempts before a notification is marked failed.")
    first_retry: Duration = Field(timedelta(seconds=10), gt=timedelta(0),
                                  description="Wait before the 2nd attempt; doubles after.")
    max_retry: Duration = Field(timedelta(minutes=10), gt=timedelta(0),
                                description="The longest wait between attempts.")
    max_retry_after: Duration = Field(timedelta(hours=1), gt=timedelta(0),
                                      description="Cap on a destination's Retry-After.")


DestinationName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class AlertsConfig(BaseModel):
    """Where incidents are sent, and when."""

    model_config = ConfigDict(extra="forbid")
    destinations: dict[DestinationName, Destination] = Field(
        default_factory=dict, description="name (letters, digits, `_.-`) -> destination.")
    routes: list[Route] = Field(default_factory=list, description="Tried in order.")
    default: list[str] = Field(default_factory=list, description="Destinations of incidents no route matches.")
    min_severity: Severity = Field(
        Severity.warning, description="Incidents below it are recorded, never sent.")
    group_wait: Duration = Field(timedelta(minutes=2), ge=timedelta(0),
                                 description="Wait after a group's first incident opens, so incidents with one cause "
                                             "go out in one notification.")
    group_interval: Duration = Field(timedelta(minutes=30), gt=timedelta(0),
                                     description="Wait at least this long after a group's last notification before "
                                                 "telling of incidents that joined it since.")
    repeat_interval: Duration = Field(timedelta(hours=4), ge=timedelta(minutes=1),
                                      description="Resend a group still open this often (at least 1m).")
    dashboard_url: str = Field("http://127.0.0.1:8501", description="Links in notifications point here.")
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)

    def routes_for(self, properties: dict[str, list[str]]) -> list[tuple[str, Route | None]]:
        """(destination, the route that chose it) for an incident with these properties; None: the default."""
        chosen: list[tuple[str, Route | None]] = []
        for route in self.routes:
            if route.matches(properties):
                chosen += [(d, route) for d in route.destinations]
                if not route.continue_:
                    break
        if not chosen:
            chosen = [(d, None) for d in self.default]
        first: dict[str, Route | None] = {}
        for destination, chooser in chosen:
            first.setdefault(destination, chooser)  # a destination named twice gets one notification
        return list(first.items())


class GuardConfig(BaseModel):
    """When agents should stop acting on their own (``GET /v1/agents/{agent_id}/guard``)."""

    model_config = ConfigDict(extra="forbid")
    pause_on: list[str] = Field(
        default_factory=list, description="Checks (or patterns such as schema.*) whose critical incidents pause "
                                          "the agents they name until they resolve.")

    def pauses(self, check: str) -> bool:
        return any(fnmatchcase(check, pattern) for pattern in self.pause_on)


def validate_alerts(alerts: AlertsConfig, guard: GuardConfig, known_checks: list[str], where: Where) -> None:
    """Names that must refer to something: route destinations, default destinations, the checks and severities
    routes match, guarded checks, and the environment variables holding secrets.

    `where(loc)` gives the text naming the place of a key path (file and line) for the error."""
    for index, route in enumerate(alerts.routes):
        for name in route.destinations:
            if name not in alerts.destinations:
                raise ConfigError(f"{where(('alerts', 'routes', index, 'destinations'))}: no destination is named "
                                  f"{name!r}; defined: {', '.join(sorted(alerts.destinations)) or 'none'}")
        for key in ("check", "severity"):
            for pattern in _patterns(route.match.get(key)):
                problem = pattern_problem(key, pattern, known_checks)
                if problem:
                    raise ConfigError(f"{where(('alerts', 'routes', index, 'match', key))}: {problem}")
    for name in alerts.default:
        if name not in alerts.destinations:
            raise ConfigError(f"{where(('alerts', 'default'))}: no destination is named {name!r}; defined: "
                              f"{', '.join(sorted(alerts.destinations)) or 'none'}")
    for pattern in guard.pause_on:
        problem = pattern_problem("check", pattern, known_checks)
        if problem:
            raise ConfigError(f"{where(('guard', 'pause_on'))}: {problem}")
    for name, destination in alerts.destinations.items():
        unreadable = _secret_problem(destination)
        if unreadable:
            field, what = unreadable
            raise ConfigError(f"{where(('alerts', 'destinations', name, field))}: {what}")


def _patterns(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else value


def pattern_problem(key: str, pattern: str, known_checks: list[str]) -> str | None:
    """What is wrong with a `check` or `severity` pattern that matches nothing (with the closest valid value),
    or None; other keys (agents, objects, fields, actions) are open-ended and never wrong."""
    if key == "severity":
        valid = [s.value for s in Severity]
        if not any(fnmatchcase(value, pattern) for value in valid):
            return f"{pattern!r} matches no severity{did_you_mean(pattern, valid)} (severities: {', '.join(valid)})"
    elif key == "check" and not any(fnmatchcase(name, pattern) for name in known_checks):
        # Compare a glob by its fixed part too, so `qualty.*` suggests `quality.*`.
        hint = did_you_mean(pattern, known_checks) or did_you_mean(
            pattern, sorted({n.split(".")[0] + ".*" for n in known_checks}))
        return f"{pattern!r} names no check{hint} (known checks: {', '.join(sorted(known_checks))})"
    return None


SHELL_REFERENCE = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")
SECRET_FIELDS = (("url", "url_env"), ("routing_key", "routing_key_env"), ("secret", "secret_env"))


def _secret_problem(destination: BaseModel) -> tuple[str, str] | None:
    """(field, what is wrong) for a secret the destination cannot read: an environment variable that is not
    set, or a shell reference such as ``${PD_KEY}`` that the file does not expand; None when all are readable."""
    for inline, env in SECRET_FIELDS:
        value, variable = getattr(destination, inline, None), getattr(destination, env, None)
        written = SHELL_REFERENCE.match(value.get_secret_value().strip()) if isinstance(value, SecretStr) else None
        if written:
            return inline, (f"'${{...}}' is not expanded in agentwatch.yaml; write {env}: {written.group(1)} to read "
                            "it from the environment")
        if variable is None:
            continue
        reference = SHELL_REFERENCE.match(variable.strip())
        if reference:
            return env, f"give the variable's name: {env}: {reference.group(1)}"
        if not os.environ.get(variable):
            return env, (f"environment variable {variable} is not set; set it in agentwatch's environment (or give "
                         f"{inline} in the file)")
    return None
