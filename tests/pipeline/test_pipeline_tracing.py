"""OpenTelemetry: one run of the pipeline is one trace, across its five stages, with its
model calls as `chat` spans carrying token counts (the SDK's in-memory exporter)."""

from __future__ import annotations

from collections import Counter

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from pipeline_helpers import HANG
from tracing_helpers import named, parent_id, tracing

from pipeline.run_many import run_sectors
from pipeline.runtime import Runtime
from pipeline.settings import JOB_TYPES

pytestmark = pytest.mark.integration


async def test_one_run_is_one_trace(runtime: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    with tracing() as exporter:
        code = await run_sectors(
            runtime.settings, ["Technology"], user_id="user-1", auto_approve=True, timeout=HANG
        )
        spans = exporter.get_finished_spans()
    assert code == 0, capsys.readouterr()
    (root,) = named(spans, "run Technology")
    assert parent_id(root) is None and root.status.status_code == StatusCode.UNSET
    trace_id = root.context.trace_id
    ours = [s for s in spans if s.context.trace_id == trace_id]
    # every span of the run is in the run's trace: nothing started a trace of its own
    assert len(ours) == len(spans), Counter(s.name for s in spans if s not in ours)
    by_id = {s.context.span_id: s for s in spans}
    for stage in JOB_TYPES:
        sends, runs = named(spans, f"send {stage}"), named(spans, f"process {stage}")
        assert sends and runs, stage
        assert all(s.kind == SpanKind.PRODUCER for s in sends)
        assert all(s.kind == SpanKind.CONSUMER for s in runs)
        for run in runs:  # each run is the child of the span that added its job
            parent = by_id[parent_id(run)]  # type: ignore[index]
            assert parent.name == f"send {stage}", (run.name, parent.name)
            assert run.attributes["messaging.destination.name"] == stage
    # the chain: run -> send sector-research -> process sector-research -> send stock-ranking
    (research_send,) = named(spans, "send sector-research")
    assert parent_id(research_send) == root.context.span_id
    (ranking_send,) = named(spans, "send stock-ranking")
    assert parent_id(ranking_send) == root.context.span_id  # the auto-approval, in the run
    for stage in ("stock-analysis", "judge-review", "format-insights"):
        for send in named(spans, f"send {stage}"):
            assert by_id[parent_id(send)].name.startswith("process ")  # type: ignore[index]
    # the model calls: children of the run of the job that made them, with token counts
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert chats
    stages_calling = set()
    for chat in chats:
        attrs = dict(chat.attributes or {})
        assert chat.kind == SpanKind.CLIENT
        assert attrs["gen_ai.system"] == "anthropic"
        assert attrs["gen_ai.operation.name"] == "chat"
        assert chat.name == f"chat {attrs['gen_ai.request.model']}"
        assert attrs["gen_ai.usage.input_tokens"] > 0
        assert attrs["gen_ai.usage.output_tokens"] > 0
        parent = by_id[parent_id(chat)]  # type: ignore[index]
        assert parent.name == f"process {attrs['pipeline.stage']}"
        stages_calling.add(attrs["pipeline.stage"])
        # no prompt, answer or key: short values only
        assert all(len(str(v)) < 100 for v in attrs.values()), attrs
    assert {"sector-research", "stock-analysis", "judge-review"} <= stages_calling


def _setup_in_a_process(**env: str) -> str:
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = (
        "from pipeline import tracing\n"
        "p = tracing.setup()\n"
        "print(type(p).__name__, tracing.enabled(),"
        " sorted(type(s.span_exporter).__name__ for s in"
        " getattr(getattr(p, '_active_span_processor', None), '_span_processors', ())))\n"
        "tracing.shutdown(p)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
        timeout=HANG,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_setup_only_when_the_otel_variables_ask_for_export() -> None:
    assert _setup_in_a_process() == "NoneType False []"
    assert _setup_in_a_process(OTEL_TRACES_EXPORTER="none") == "NoneType False []"
    assert (
        _setup_in_a_process(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
        == "TracerProvider True ['OTLPSpanExporter']"
    )
    assert (
        _setup_in_a_process(OTEL_TRACES_EXPORTER="console")
        == "TracerProvider True ['ConsoleSpanExporter']"
    )
