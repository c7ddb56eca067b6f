"""Observability: metrics, alerts, the audit trail and structured logging.

Everything here is an object owned by one orchestrator — a ``MetricsCollector``,
an ``AlertMonitor``, an ``AuditLog``, a logger from ``make_logger`` — and nothing
is process-global, so two orchestrators in one process never see each other's
numbers, alerts or secrets. The executor feeds ``MetricsCollector``; alert
monitors and exporters (Prometheus, OpenTelemetry) subscribe to its events with
``add_listener``. ``summarize``/``format_report`` read audit logs back for the
``tierwise report`` command. The exporters (``PrometheusObserver``,
``OTelObserver``) and alert sinks (``LogSink``, ``WebhookSink``) import their
optional libraries only when made.

The names below are loaded on first access: the orchestrator always imports
``observe.metrics``, and that must not drag in structlog or sqlite3 for
applications that never log through tierwise or keep a SQLite audit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .alert_sinks import LogSink, WebhookSink
    from .alerts import Alert, AlertMonitor, AlertRule
    from .audit import AuditLog, SQLiteAudit, audit_failure_record, audit_record, read_sqlite_audit
    from .logging import make_logger, redacting_processor
    from .metrics import AttemptEvent, MetricsCollector, QuantileSketch, RequestEvent
    from .otel import OTelObserver
    from .prometheus import PrometheusObserver, metrics_app
    from .report import audit_paths, format_report, summarize

__all__ = [
    "Alert",
    "AlertMonitor",
    "AlertRule",
    "AttemptEvent",
    "AuditLog",
    "LogSink",
    "MetricsCollector",
    "OTelObserver",
    "PrometheusObserver",
    "QuantileSketch",
    "RequestEvent",
    "SQLiteAudit",
    "WebhookSink",
    "audit_failure_record",
    "audit_paths",
    "audit_record",
    "format_report",
    "make_logger",
    "metrics_app",
    "read_sqlite_audit",
    "redacting_processor",
    "summarize",
]

_WHERE = {
    "Alert": "alerts",
    "AlertMonitor": "alerts",
    "AlertRule": "alerts",
    "AttemptEvent": "metrics",
    "AuditLog": "audit",
    "LogSink": "alert_sinks",
    "MetricsCollector": "metrics",
    "OTelObserver": "otel",
    "PrometheusObserver": "prometheus",
    "QuantileSketch": "metrics",
    "RequestEvent": "metrics",
    "SQLiteAudit": "audit",
    "WebhookSink": "alert_sinks",
    "audit_failure_record": "audit",
    "audit_paths": "report",
    "audit_record": "audit",
    "format_report": "report",
    "make_logger": "logging",
    "metrics_app": "prometheus",
    "read_sqlite_audit": "audit",
    "redacting_processor": "logging",
    "summarize": "report",
}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals(), __all__)
