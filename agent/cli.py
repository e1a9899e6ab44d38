"""The ``watchkeeper`` command: run, demo, rules check/test, schema.

A user's mistake (bad rules, bad settings) prints one line per problem on stderr and
exits 1; a traceback means a bug in Watchkeeper.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from agent.dcgm_cli import dcgm_poll
from agent.actions_cli import actions_app
from agent.errors import RuleError, WatchkeeperError

__all__ = ["app", "main"]

app = typer.Typer(
    name="watchkeeper",
    help="Event-driven monitoring agent for ML and LLM services: Kafka in, Alertmanager pages out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
rules_app = typer.Typer(help="Check and unit-test rule files.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(actions_app, name="actions")
app.command("dcgm-poll")(dcgm_poll)

_ENV = "WATCHKEEPER_"


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(1)


_PRICES_HELP = "LLM price table (YAML) for spend_usd."


@rules_app.command("check")
def rules_check(
    files: Annotated[list[Path], typer.Argument(help="Rule files or directories.")],
    prices: Annotated[Optional[Path], typer.Option(envvar=_ENV + "PRICES", help=_PRICES_HELP)] = None,
) -> None:
    """Validate rule files; every problem is printed as file:line:col: reason."""
    from agent.rules import load_rules
    from agent.rules.pricing import PriceTable

    try:
        rules = load_rules(files, PriceTable.load(prices) if prices else None)
    except RuleError as exc:
        typer.echo("FAILED:", err=True)
        raise _fail(str(exc)) from None
    typer.echo(f"SUCCESS: {len(rules)} rules found in {len(rules.files)} file(s)")


@rules_app.command("test")
def rules_test(files: Annotated[list[Path], typer.Argument(help="Rule test files (promtool style).")]) -> None:
    """Run rule unit tests: input events as series, expected alerts at eval times."""
    from agent.ruletest import run_test_file

    failed = 0
    for file in files:
        typer.echo(f"Unit Testing: {file}")
        try:
            result = run_test_file(file)
        except RuleError as exc:
            typer.echo(f"  FAILED:\n{exc}", err=True)
            failed += 1
            continue
        if result.ok:
            typer.echo(f"  SUCCESS ({result.groups} groups, {result.cases} cases)")
        else:
            failed += 1
            typer.echo("  FAILED:", err=True)
            for failure in result.failures:
                typer.echo(failure, err=True)
    if failed:
        raise typer.Exit(1)


def _param(text: str) -> tuple[str, object]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise _fail(f"--param {text!r} is not NAME=VALUE")
    raw = raw.strip()
    for convert in (int, float):
        try:
            return name.strip(), convert(raw)
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        return name.strip(), raw.lower() == "true"
    return name.strip(), raw


@app.command()
def backtest(
    input_file: Annotated[Optional[Path], typer.Argument(help="CSV of timestamp,value, or JSONL events (not with --policy).")] = None,
    rules: Annotated[Optional[Path], typer.Option(help="Rules file holding the rule to try.")] = None,
    alert: Annotated[Optional[str], typer.Option(help="The rule's alert name (with --rules).")] = None,
    kind: Annotated[Optional[str], typer.Option(help="A detector kind to try without a rules file.")] = None,
    param: Annotated[Optional[list[str]], typer.Option(help="Detector parameter NAME=VALUE (with --kind), repeatable.")] = None,
    for_: Annotated[str, typer.Option("--for", help="Pending duration (with --kind).")] = "0s",
    keep_firing_for: Annotated[str, typer.Option(help="Keep-firing duration (with --kind).")] = "0s",
    out: Annotated[Optional[Path], typer.Option(help="Write per-row score, verdict and alert state here (CSV).")] = None,
    prices: Annotated[Optional[Path], typer.Option(envvar=_ENV + "PRICES", help=_PRICES_HELP)] = None,
    policy: Annotated[Optional[list[str]], typer.Option(help="Policy backtest: rule files or folders whose actions to judge, repeatable (docs/policy-backtest.md).")] = None,
    events: Annotated[Optional[Path], typer.Option(help="Policy backtest: recorded events, JSONL.")] = None,
    topic: Annotated[Optional[str], typer.Option(help="Policy backtest: read this Kafka topic's --from/--to range (no consumer group).")] = None,
    bootstrap: Annotated[str, typer.Option(envvar=_ENV + "KAFKA_BOOTSTRAP", help="Policy backtest: Kafka bootstrap servers for --topic.")] = "",
    from_: Annotated[Optional[str], typer.Option("--from", help="Policy backtest: window start, epoch s or ISO 8601 (UTC).")] = None,
    to: Annotated[Optional[str], typer.Option(help="Policy backtest: window end (exclusive), epoch s or ISO 8601 (UTC).")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="Policy backtest: labelled incidents, CSV start,end[,service] or JSON.")] = None,
    targets: Annotated[Optional[Path], typer.Option(help="Policy backtest: simulated Deployments/HPAs/aliases (YAML); default: defaults.")] = None,
    report_dir: Annotated[Path, typer.Option(help="Policy backtest: where report.md and timeline.png go.")] = Path("policy-backtest"),
    ceiling: Annotated[str, typer.Option(help="Policy backtest: the agent's mode ceiling (dry-run, approve, enforce).")] = "enforce",
    max_per_hour: Annotated[int, typer.Option(help="Policy backtest: fleet-wide budget, actions per rolling hour.")] = 20,
    namespaces: Annotated[str, typer.Option(help="Policy backtest: namespace allow-list, comma-separated (empty: any).")] = "",
    max_events: Annotated[int, typer.Option(help="Policy backtest: the most events held in memory; more is refused (narrow the window).")] = 5_000_000,
) -> None:
    """Replay a recorded series through a rule's detector and alert lifecycle, as fast as possible.

    With --policy: replay recorded events through the whole policy (detectors, alerts,
    remediation decisions, every guard) against simulated targets, and write a report.
    """
    import time

    if policy:
        _policy_backtest(policy, events, topic, bootstrap, from_, to, labels, targets, report_dir, ceiling, max_per_hour, namespaces, max_events)
        return
    if input_file is None:
        raise _fail("give an input file (or --policy RULES with --events FILE or --topic NAME)")

    from agent.backtest import backtest_file, rule_for_kind, summary_json
    from agent.duration import parse_duration
    from agent.rules import load_rules
    from agent.rules.pricing import PriceTable

    try:
        if kind:
            params = dict(_param(p) for p in (param or []))
            rule = rule_for_kind(kind, params, for_s=parse_duration(for_), keep_firing_for_s=parse_duration(keep_firing_for))
        elif rules and alert:
            ruleset = load_rules([rules], PriceTable.load(prices) if prices else None)
            matching = [r for r in ruleset.rules if r.name == alert]
            if not matching:
                raise _fail(f"no rule named {alert!r} in {rules} (have: {', '.join(r.name for r in ruleset.rules)})")
            rule = matching[0]
        else:
            raise _fail("give --rules FILE --alert NAME, or --kind KIND [--param NAME=VALUE ...]")
        started = time.perf_counter()
        if out is not None:
            with out.open("w", newline="", encoding="utf-8") as fh:
                result = backtest_file(rule, input_file, fh)
        else:
            result = backtest_file(rule, input_file)
        elapsed = time.perf_counter() - started
    except (WatchkeeperError, ValueError, OSError) as exc:
        raise _fail(f"watchkeeper: {exc}") from None
    typer.echo(summary_json(result))
    rate = result.rows / elapsed if elapsed > 0 else float("inf")
    typer.echo(f"backtest: {result.rows} rows in {elapsed:.3f}s ({rate:,.0f} rows/s)", err=True)


def _policy_backtest(
    policy: list[str], events: Optional[Path], topic: Optional[str], bootstrap: str, start: Optional[str], end: Optional[str],
    labels: Optional[Path], targets: Optional[Path], report_dir: Path, ceiling: str, max_per_hour: int, namespaces: str,
    max_events: int,
) -> None:
    from agent.config import kafka_security_from_env
    from agent.logs import configure_logging
    from agent.policy_backtest import PolicyBacktest, PolicySettings, run_policy_backtest

    configure_logging("error", json=False)  # the report says what was decided; a log line per decision is noise
    try:
        allowed = frozenset(n.strip() for n in namespaces.split(",") if n.strip()) or None
        job = PolicyBacktest(
            policy=tuple(policy), out=report_dir, events=events, topic=topic, bootstrap=bootstrap or None,
            start=start, end=end, labels=labels, targets=targets,
            settings=PolicySettings(ceiling=ceiling, fleet_max_per_hour=max_per_hour, namespaces=allowed),
            security=kafka_security_from_env() if topic else None, max_events=max_events,
        )
        run, md, png = run_policy_backtest(job)
    except (WatchkeeperError, ValueError, OSError, TimeoutError) as exc:
        raise _fail(f"watchkeeper: {exc}") from None
    typer.echo(f"backtest: {run.events} events, {len(run.records)} decisions; report {md}, timeline {png}", err=True)


@app.command()
def schema(
    source: Annotated[Optional[str], typer.Option(help="Only this source: inference, llm, gpu, retrieval or feedback.")] = None,
) -> None:
    """Print the wire contract (events on Kafka) as JSON Schema."""
    from agent.model import EVENT_ADAPTER
    from agent.rules.fields import EVENT_TYPES as models
    if source is None:
        doc = EVENT_ADAPTER.json_schema()
        doc["title"] = "Watchkeeper event"
    elif source in models:
        doc = models[source].model_json_schema()
    else:
        raise _fail(f"unknown source {source!r} ({', '.join(models)})")
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    typer.echo(json.dumps(doc, indent=2, sort_keys=True))


@app.command()
def run(
    kafka_bootstrap: Annotated[str, typer.Option(envvar=_ENV + "KAFKA_BOOTSTRAP", help="Kafka bootstrap servers, host:port[,host:port].")],
    rules: Annotated[str, typer.Option(envvar=_ENV + "RULES", help="Rule files or directories, comma-separated.")],
    alertmanager_url: Annotated[str, typer.Option(envvar=_ENV + "ALERTMANAGER_URL", help="Alertmanager base URL(s), comma-separated (HA pair). Empty: print pages to stdout.")] = "",
    alertmanager_token_file: Annotated[str, typer.Option(envvar=_ENV + "ALERTMANAGER_TOKEN_FILE", help="File holding a bearer token for Alertmanager.")] = "",
    http_addr: Annotated[str, typer.Option(envvar=_ENV + "HTTP_ADDR", help="Listen address for /metrics, /healthz, /readyz.")] = "0.0.0.0:9464",
    external_url: Annotated[str, typer.Option(envvar=_ENV + "EXTERNAL_URL", help="This agent's URL, used as the alerts' generatorURL.")] = "",
    group_id: Annotated[str, typer.Option(envvar=_ENV + "GROUP_ID", help="Kafka consumer group.")] = "watchkeeper",
    topic_inference: Annotated[str, typer.Option(envvar=_ENV + "TOPIC_INFERENCE")] = "watchkeeper.inference",
    topic_llm: Annotated[str, typer.Option(envvar=_ENV + "TOPIC_LLM")] = "watchkeeper.llm",
    topic_gpu: Annotated[str, typer.Option(envvar=_ENV + "TOPIC_GPU")] = "watchkeeper.gpu",
    topic_dlq: Annotated[str, typer.Option(envvar=_ENV + "TOPIC_DLQ")] = "watchkeeper.dlq",
    topic_alerts: Annotated[str, typer.Option(envvar=_ENV + "TOPIC_ALERTS", help="Durable outbox of alert transitions.")] = "watchkeeper.alerts",
    topic_audit: Annotated[str, typer.Option(envvar=_ENV + "TOPIC_AUDIT", help="Audit records of remediation decisions (the actions ledger).")] = "watchkeeper.audit",
    topic_retrain: Annotated[str, typer.Option(envvar=_ENV + "TOPIC_RETRAIN", help="Retrain requests of the retrain action.")] = "watchkeeper.retrain",
    topic_retrieval: Annotated[str, typer.Option(envvar=_ENV + "TOPIC_RETRIEVAL", help="Retrieval (vector index lookup) events.")] = "watchkeeper.retrieval",
    topic_feedback: Annotated[str, typer.Option(envvar=_ENV + "TOPIC_FEEDBACK", help="User feedback events.")] = "watchkeeper.feedback",
    actions_mode: Annotated[str, typer.Option(envvar=_ENV + "ACTIONS_MODE", help="Ceiling for every rule's action mode: dry-run, approve or enforce.")] = "dry-run",
    actions_max_per_hour: Annotated[int, typer.Option(envvar=_ENV + "ACTIONS_MAX_PER_HOUR", help="Fleet-wide budget: actions executed per rolling hour.")] = 20,
    actions_namespaces: Annotated[str, typer.Option(envvar=_ENV + "ACTIONS_NAMESPACES", help="Namespaces actions may change, comma-separated (empty: any the RBAC allows).")] = "",
    actions_approve_token_file: Annotated[str, typer.Option(envvar=_ENV + "ACTIONS_APPROVE_TOKEN_FILE", help="File holding the bearer token POST /actions/{id}/approve requires.")] = "",
    kubeconfig: Annotated[str, typer.Option(envvar=_ENV + "KUBECONFIG", help="Kubeconfig for actions (empty: in-cluster config when in a pod).")] = "",
    mlflow_tracking_uri: Annotated[str, typer.Option(envvar=_ENV + "MLFLOW_TRACKING_URI", help="MLflow tracking server for rollbacks.")] = "",
    agent_id: Annotated[str, typer.Option(envvar=_ENV + "AGENT_ID", help="This agent's name in audit records and leases (default: hostname).")] = "",
    batch_max_records: Annotated[int, typer.Option(envvar=_ENV + "BATCH_MAX_RECORDS")] = 1000,
    session_timeout_ms: Annotated[int, typer.Option(envvar=_ENV + "KAFKA_SESSION_TIMEOUT_MS", help="Consumer group session timeout.")] = 10_000,
    fetch_max_wait_ms: Annotated[
        int, typer.Option(envvar=_ENV + "KAFKA_FETCH_MAX_WAIT_MS", help="Longest a fetch waits for data (bounds event-to-agent delay).")
    ] = 100,
    heartbeat_interval_ms: Annotated[int, typer.Option(envvar=_ENV + "KAFKA_HEARTBEAT_INTERVAL_MS")] = 3_000,
    prices: Annotated[str, typer.Option(envvar=_ENV + "PRICES", help=_PRICES_HELP)] = "",
    report_dir: Annotated[str, typer.Option(envvar=_ENV + "REPORT_DIR", help="Where drift reports (HTML) are written; served at /reports/.")] = "watchkeeper-reports",
    create_topics: Annotated[int, typer.Option(envvar=_ENV + "CREATE_TOPICS", help="Create missing topics with this many partitions at start (0: leave topics to the operator).")] = 0,
    max_event_bytes: Annotated[int, typer.Option(envvar=_ENV + "MAX_EVENT_BYTES")] = 256 * 1024,
    max_series: Annotated[int, typer.Option(envvar=_ENV + "MAX_SERIES", help="Bound on (rule, series) states, shared among sources; see docs/security-series.md.")] = 100_000,
    resend_interval: Annotated[float, typer.Option(envvar=_ENV + "RESEND_INTERVAL_S", help="Seconds between re-sends of firing alerts.")] = 60.0,
    processed_log: Annotated[str, typer.Option(envvar=_ENV + "PROCESSED_LOG", help="Append every processed topic/partition/offset here (audit of at-least-once).")] = "",
    checkpoints: Annotated[bool, typer.Option(envvar=_ENV + "CHECKPOINTS", help="Checkpoint each partition's detector and alert state to the state topic (fleet mode).")] = True,
    state_topic: Annotated[str, typer.Option(envvar=_ENV + "STATE_TOPIC", help="Compacted topic holding partition checkpoints.")] = "watchkeeper.state",
    checkpoint_interval: Annotated[float, typer.Option(envvar=_ENV + "CHECKPOINT_INTERVAL", help="Seconds between checkpoints of the partitions that moved.")] = 10.0,
    lag_warn_records: Annotated[int, typer.Option(envvar=_ENV + "LAG_WARN_RECORDS", help="A partition further behind than this many records is reported lagging.")] = 10_000,
    max_active_alerts: Annotated[int, typer.Option(envvar=_ENV + "MAX_ACTIVE_ALERTS", help="Bound on pending + firing alerts; new ones beyond it are refused and counted.")] = 10_000,
    series_proven: Annotated[float, typer.Option(envvar=_ENV + "SERIES_PROVEN_S", help="Event time a series' events must span before no new series may take its place.")] = 300.0,
    series_retain: Annotated[float, typer.Option(envvar=_ENV + "SERIES_RETAIN_S", help="How long a proven series may stay silent and keep its place.")] = 86_400.0,
    series_shares: Annotated[str, typer.Option(envvar=_ENV + "SERIES_SHARES", help="Share of max-series per source, e.g. inference=0.5,llm=0.25,gpu=0.25 (default: equal).")] = "",
    max_event_skew: Annotated[float, typer.Option(envvar=_ENV + "MAX_EVENT_SKEW_S", help="Seconds an event's ts may differ from its Kafka record timestamp; further is dead-lettered (kind skew). 0: trust event time as sent (replays of history).")] = 10.0,
    stall_batches: Annotated[int, typer.Option(envvar=_ENV + "STALL_BATCHES", help="A partition whose batch fails this many times in a row is reported stalled (/readyz, watchkeeper_partition_stalled).")] = 5,
    log_level: Annotated[str, typer.Option(envvar=_ENV + "LOG_LEVEL")] = "info",
    log_json: Annotated[bool, typer.Option(envvar=_ENV + "LOG_JSON", help="JSON log lines (else human-readable).")] = True,
    approvers_file: Annotated[str, typer.Option(envvar=_ENV + "APPROVERS_FILE", help="Bearer tokens of the HTTP API, bound to names: name:token lines or a YAML mapping (docs/security-http.md).")] = "",
    report_max_count: Annotated[int, typer.Option(envvar=_ENV + "REPORT_MAX_COUNT", help="Drift reports kept; the oldest are deleted beyond it.")] = 100,
    report_max_bytes: Annotated[int, typer.Option(envvar=_ENV + "REPORT_MAX_BYTES", help="Total bytes of drift reports kept; the oldest are deleted beyond it.")] = 512 * 1024 * 1024,
    topic_keys_file: Annotated[str, typer.Option(envvar=_ENV + "TOPIC_KEYS_FILE", help="Key file signing the alerts, audit and state topics (one key per line, the first signs); every agent of a fleet and the approver share it. Empty: $XDG_STATE_HOME/watchkeeper/topic-keys, created on first start.")] = "",
) -> None:
    """Run the agent. Every option also reads its WATCHKEEPER_* environment variable.

    Kafka security comes from WATCHKEEPER_KAFKA_SECURITY_PROTOCOL, _SASL_MECHANISM,
    _SASL_USERNAME, _SASL_PASSWORD (or _SASL_PASSWORD_FILE), _SSL_CAFILE, _SSL_CERTFILE
    and _SSL_KEYFILE.
    """
    from agent.config import AgentConfig, KafkaConfig, SeriesLimits, Topics, kafka_security_from_env, parse_shares, parse_urls
    from agent.logs import configure_logging

    try:
        configure_logging(log_level, json=log_json)
        headers = {}
        if alertmanager_token_file:
            headers["Authorization"] = "Bearer " + Path(alertmanager_token_file).read_text(encoding="utf-8").strip()
        config = AgentConfig(
            kafka=KafkaConfig(
                kafka_bootstrap,
                group_id=group_id,
                security=kafka_security_from_env(),
                batch_max_records=batch_max_records,
                session_timeout_ms=session_timeout_ms,
                fetch_max_wait_ms=fetch_max_wait_ms,
                heartbeat_interval_ms=heartbeat_interval_ms,
            ),
            rules=tuple(r.strip() for r in rules.split(",") if r.strip()),
            topics=Topics(topic_inference, topic_llm, topic_gpu, topic_dlq, topic_alerts, topic_audit, topic_retrain, topic_retrieval, topic_feedback),
            alertmanager_urls=parse_urls(alertmanager_url, _ENV + "ALERTMANAGER_URL"),
            alertmanager_headers=headers,
            http_addr=http_addr,
            external_url=external_url,
            max_event_bytes=max_event_bytes,
            max_series=max_series,
            resend_interval_s=resend_interval,
            processed_log=processed_log or None,
            checkpoints=checkpoints,
            state_topic=state_topic,
            checkpoint_interval_s=checkpoint_interval,
            lag_warn_records=lag_warn_records,
            create_topics=create_topics,
            prices_file=prices or None,
            report_dir=report_dir,
            actions_mode=actions_mode,
            actions_max_per_hour=actions_max_per_hour,
            actions_namespaces=tuple(n.strip() for n in actions_namespaces.split(",") if n.strip()) or None,
            actions_approve_token=Path(actions_approve_token_file).read_text(encoding="utf-8").strip() if actions_approve_token_file else None,
            kubeconfig=kubeconfig or None,
            mlflow_tracking_uri=mlflow_tracking_uri or None,
            agent_id=agent_id,
            series_limits=SeriesLimits(max_active_alerts, series_proven, series_retain, parse_shares(series_shares)),
            approvers_file=approvers_file or None,
            report_max_count=report_max_count,
            report_max_bytes=report_max_bytes,
            topic_keys_file=topic_keys_file or None,
            max_event_skew_s=max_event_skew,
            stall_batches=stall_batches,
        )
        asyncio.run(_run(config))
    except (WatchkeeperError, ValueError, OSError) as exc:
        raise _fail(f"watchkeeper: {exc}") from None


async def _run(config: "AgentConfig") -> None:  # noqa: F821 - imported lazily above
    from agent.runtime.alertmanager import AlertmanagerClient
    from agent.runtime.app import AgentApp
    from agent.runtime.notifier import AlertSink, TerminalSink
    from agent.runtime.selfmetrics import SelfMetrics

    metrics = SelfMetrics()
    sink: AlertSink
    client = None
    if config.alertmanager_urls:
        client = AlertmanagerClient(
            config.alertmanager_urls,
            metrics=metrics,
            resend_interval_s=config.resend_interval_s,
            generator_url=config.external_url,
            headers=config.alertmanager_headers,
        )
        sink = client
    else:
        sink = TerminalSink()
    stop = asyncio.Event()
    agent = AgentApp(config, sink, metrics=metrics)
    if config.topic_keys_file is None and config.checkpoints:
        from agent.logs import get_logger

        get_logger("watchkeeper").warning(
            "the topic key file was not configured; this agent uses its own. Every agent of a fleet (and the "
            "`watchkeeper actions` approver) must share one: set WATCHKEEPER_TOPIC_KEYS_FILE, or agents ignore "
            "each other's checkpoints and audit records",
            topic_keys_file=agent.topic_keys.path,
            generated=agent.topic_keys.generated,
        )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, agent.reloader.request)
    try:
        await agent.run_until(stop)
    finally:
        if client is not None:
            await client.aclose()


@app.command()
def demo(
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 120.0,
) -> None:
    """Run a self-contained demo: embedded broker, simulated services with faults, the agent.

    Uses WATCHKEEPER_KAFKA_BOOTSTRAP and WATCHKEEPER_ALERTMANAGER_URL when they are set.
    """
    from agent.config import parse_urls
    from agent.demo import run_demo
    from agent.logs import configure_logging

    configure_logging("warning", json=False)
    try:
        status = asyncio.run(
            run_demo(
                bootstrap=os.environ.get(_ENV + "KAFKA_BOOTSTRAP") or None,
                alertmanager_urls=parse_urls(os.environ.get(_ENV + "ALERTMANAGER_URL"), _ENV + "ALERTMANAGER_URL"),
                timeout_s=timeout,
            )
        )
    except WatchkeeperError as exc:
        raise _fail(f"watchkeeper: {exc}") from None
    raise typer.Exit(status)


@app.command()
def simulate(
    files: Annotated[list[Path], typer.Argument(help="Scenario files (simulations/*.yaml) or folders of them.")],
    out: Annotated[Path, typer.Option(help="Reports go here: one folder per scenario, plus summary.md.")] = Path("simulation-reports"),
    bootstrap: Annotated[str, typer.Option(help="Use this Kafka broker instead of an embedded one per scenario.")] = "",
    alertmanager_url: Annotated[str, typer.Option(help="Send pages to this Alertmanager instead of a local one.")] = "",
    kubeconfig: Annotated[str, typer.Option(help="Kubernetes API for scale actions (else they run dry).")] = "",
    mlflow_uri: Annotated[str, typer.Option(help="MLflow server for rollbacks (else they run dry).")] = "",
    llm_trace: Annotated[str, typer.Option(help="The Azure LLM trace CSV to replay (overrides the scenarios' path).")] = "",
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal).")] = None,
) -> None:
    """Run chaos scenarios end to end; exit 1 if any expectation failed (one line each)."""
    from agent.logs import configure_logging
    from agent.simulate import RunSettings, run_simulations

    configure_logging("error", json=False)
    settings = RunSettings(
        out=out, bootstrap=bootstrap or None, alertmanager_url=alertmanager_url or None,
        kubeconfig=kubeconfig or None, mlflow_uri=mlflow_uri or None, llm_trace=llm_trace or None,
    )
    try:
        status = run_simulations(files, settings, progress=progress)
    except WatchkeeperError as exc:
        raise _fail(f"watchkeeper: {exc}") from None
    raise typer.Exit(status)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
