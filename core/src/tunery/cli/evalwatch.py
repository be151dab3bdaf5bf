"""`tunery eval watch` (and `eval run`'s default): follow an evaluation to its end from StreamEvaluationResults, a
progress bar on a terminal, a line every N examples elsewhere; then the summary. A stream cut by an evaluator that
restarts is resumed from the last result."""

from __future__ import annotations

import time

import grpc
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tunery.cli import output
from tunery.cli.evalview import error_line, model_errors_line, pairs_table, progress_text, summary_table
from tunery.cli.jobview import TERMINAL, state_name, styled
from tunery.cli.output import console, info, say
from tunery.common.v1 import common_pb2
from tunery.errors import TuneryError
from tunery.evaluator.v1 import evaluator_pb2 as epb
from tunery.evaluator.v1 import evaluator_pb2_grpc

STREAM_DEADLINE = 24 * 3600.0
RECONNECT_FOR = 120.0


class Bar:
    """A live bar on a terminal; off one, a progress line every `every` examples (and at state changes)."""

    def __init__(self, e: epb.Evaluation, every: int) -> None:
        self.every = every
        self.done = 0  # results seen (the stream replays stored ones first)
        self.errored = 0
        self.total = e.total_examples
        self.state = e.state
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        if console.is_terminal:
            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[errors]}"), TimeElapsedColumn(), console=console)
            self.task = self.progress.add_task(state_name(e.state), total=e.total_examples or None,
                                               completed=0, errors="")

    def __enter__(self) -> Bar:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _line(self, text: str) -> None:
        (self.progress.console if self.progress else console).print(text, soft_wrap=True, highlight=False)

    def evaluation(self, e: epb.Evaluation) -> None:
        if e.state != self.state:
            self._line(f"{state_name(self.state)} → {styled(e.state)}"
                       + (f": {escape(error_line(e.error))}" if e.error.code else ""))
            self.state = e.state
        self.total = e.total_examples or self.total
        self.done = max(self.done, e.finished_examples)
        self.errored = max(self.errored, e.errored_examples)
        self._draw()

    def result(self, r: epb.ExampleResult) -> None:
        self.done += 1
        if any(a.error for a in r.answers) or any(g.error for g in r.grades):
            self.errored += 1
        self._draw(line=self.progress is None and (self.done % self.every == 0 or self.done == self.total))

    def _draw(self, line: bool = False) -> None:
        errors = f"{self.errored} errored" if self.errored else ""
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, description=state_name(self.state), total=self.total or None,
                                 completed=self.done, errors=errors)
        elif line:
            self._line(f"{self.done}/{self.total or '?'} examples" + (f" ({errors})" if errors else ""))


def print_summary(e: epb.Evaluation) -> None:
    for t in (summary_table(e.summary), pairs_table(e.summary)):
        if t is not None:
            console.print(t)
    if errs := model_errors_line(e.summary):
        say(f"model errors: {errs}")


def finish(e: epb.Evaluation) -> int:
    say(f"evaluation {e.id} {styled(e.state)}" + (f" ({progress_text(e)} examples)" if e.total_examples else ""))
    print_summary(e)
    if e.state == common_pb2.JOB_STATE_SUCCEEDED:
        return 0
    if e.error.code:
        output.print_error(TuneryError(f"evaluation {e.id} {state_name(e.state)}: {error_line(e.error)}",
                                       code=e.error.code, field=e.error.field))
    return 1


def follow(stub: evaluator_pb2_grpc.EvaluatorServiceStub, evaluation_id: str, every: int = 10) -> int:
    """Follow to the end and print the summary; the exit code says whether it succeeded. Ctrl-C stops watching."""
    e = stub.GetEvaluation(epb.GetEvaluationRequest(evaluation_id=evaluation_id)).evaluation
    if not console.is_terminal:
        say(f"watching evaluation {e.id} ({state_name(e.state)}"
            + (f", {progress_text(e)} examples)" if e.total_examples else ")"))
    last = 0
    lost_since: float | None = None
    try:
        with output.stdout_pipe(), Bar(e, every) as bar:
            while e.state not in TERMINAL:
                request = epb.StreamEvaluationResultsRequest(evaluation_id=evaluation_id, after_sequence=last)
                try:
                    for item in stub.StreamEvaluationResults(request, timeout=STREAM_DEADLINE):
                        lost_since = None
                        if item.WhichOneof("item") == "result":
                            if item.result.sequence > last:  # a resumed stream starts after the last one seen
                                last = item.result.sequence
                                bar.result(item.result)
                        else:
                            e = item.evaluation
                            bar.evaluation(e)
                    e = stub.GetEvaluation(epb.GetEvaluationRequest(evaluation_id=evaluation_id)).evaluation
                    bar.evaluation(e)
                except grpc.RpcError as err:
                    if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):  # type: ignore[attr-defined]
                        raise
                    now = time.monotonic()
                    lost_since = lost_since or now
                    if now - lost_since > RECONNECT_FOR:
                        raise
                    time.sleep(1.0)
    except KeyboardInterrupt:
        info(f"stopped watching; evaluation {evaluation_id} goes on (`tunery eval cancel {evaluation_id}` stops it)")
        raise typer.Exit(130) from None
    with output.stdout_pipe():
        return finish(e)
