"""The evaluation side of the session stack (tests/conftest.py's `evaluation` fixture), built once for every test that
needs it (tests/test_evaluator_*.py, test_cli_evals.py, test_trainer_evaluation.py): a real gateway (uvicorn in this
process) serving the tiny random Llama and a LoRA adapter of it, and `python -m tunery_evaluator` as a process at
the address the session's trainer was given, calling the gateway with an inference-scope internal key as `tunery up`
wires it. Tests that stop the gateway or restart the evaluator put it back with `healthy()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2

from tunery.common.v1 import common_pb2
from tunery.dataset.v1 import dataset_pb2 as dpb
from tunery.errors import TuneryError
from tunery.evaluator.v1 import evaluator_pb2 as pb
from tunery.runtime import events
from tunery.runtime.grpcerrors import from_rpc_error
from tunery.testing import EventLog, LoopThread
from tunery.trainer.v1 import trainer_pb2 as tpb

if TYPE_CHECKING:
    from conftest import Stack

    from tunery_evaluator.testing import EvaluatorProcess
    from tunery_gateway.testing import ServerThread

GATEWAY_KEY = "tny-000000000000-admin-key-for-the-evaluation-tests"
INTERNAL_KEY = "tny-000000000000-internal-key-the-evaluator-calls-with"  # inference scope, as `tunery up` makes
SUCCEEDED, FAILED = common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED


def chat(i: int) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "Answer with the number doubled."},
                         {"role": "user", "content": f"What is {i} doubled?"},
                         {"role": "assistant", "content": f"{i} doubled is {2 * i}."}]}


def config(**kw: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(kw)
    return s


def error_of(fn: Callable[[], Any]) -> TuneryError:
    """The error a gRPC call raises, as the tunery.errors exception it stands for."""
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return from_rpc_error(info.value)


@dataclass
class Evaluation:
    stack: Stack
    gateway: ServerThread
    gateway_settings: Any
    evaluator: EvaluatorProcess
    events: EventLog
    tuned: str
    """The adapter's fine-tuned name at the gateway (it answers differently from the base)."""
    env: dict[str, str] = field(default_factory=dict)

    # ---- what the tests reach ----------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        """The tiny model's name at the gateway (its folder's name), and in fine-tuned names."""
        return self.stack.tiny_model.name

    @property
    def stub(self) -> Any:
        return self.evaluator.stub

    @property
    def dataset(self) -> Any:
        return self.stack.dataset

    @property
    def trainer(self) -> Any:
        return self.stack.trainer

    @property
    def gateway_v1(self) -> str:
        return f"{self.gateway.url}/v1"

    @property
    def trainer_addr(self) -> str:
        return f"127.0.0.1:{self.stack.trainer_app.port}"

    def served(self) -> list[str]:
        resp = httpx.get(f"{self.gateway.url}/v1/models", headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
        return [m["id"] for m in resp.json()["data"]]

    def cli_env(self) -> dict[str, str]:
        """For `tunery ...` subprocesses: the session's services by address, no colour, 100 columns."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUNERY_")}
        env.update(TUNERY_EVALUATOR_ADDR=self.stack.evaluator_addr, TUNERY_TRAINER_ADDR=self.trainer_addr,
                   TUNERY_DATASET_ADDR=self.stack.dataset_addr, COLUMNS="100", NO_COLOR="1", TERM="dumb",
                   TUNERY_DATA_DIR=str(self.stack.data_dir / "cli"))
        return env

    # ---- evaluations -------------------------------------------------------------------------------------------
    def version(self, examples: list[dict[str, Any]]) -> str:
        """A new dataset whose version 1 (frozen) holds `examples`."""
        name = f"ev-{uuid.uuid4().hex[:8]}"
        self.dataset.CreateDataset(dpb.CreateDatasetRequest(name=name))
        data = b"".join(json.dumps(e).encode() + b"\n" for e in examples)
        self.dataset.UploadExamples(iter([dpb.UploadExamplesRequest(header=dpb.UploadHeader(dataset=name)),
                                          dpb.UploadExamplesRequest(chunk=data)]))
        self.dataset.FreezeVersion(dpb.FreezeVersionRequest(dataset=name))
        return name

    def spec(self, dataset: str, models: list[pb.ModelRef] | None = None, graders: list[pb.GraderSpec] | None = None,
             **kw: Any) -> pb.EvaluationSpec:
        return pb.EvaluationSpec(
            models=models if models is not None else [pb.ModelRef(model=self.base), pb.ModelRef(model=self.tuned)],
            data=kw.pop("data", pb.EvaluationData(dataset_version=pb.DatasetVersionRef(dataset=dataset, version=1))),
            graders=graders if graders is not None else [pb.GraderSpec(type="word_overlap")],
            generation=kw.pop("generation", pb.GenerationConfig(max_tokens=6, concurrency=2)), seed=7, **kw)

    def create(self, spec: pb.EvaluationSpec) -> pb.Evaluation:
        return self.stub.CreateEvaluation(pb.CreateEvaluationRequest(spec=spec)).evaluation

    # ---- outages -----------------------------------------------------------------------------------------------
    def start_gateway(self) -> ServerThread:
        """A new gateway on the port of the one that was stopped (the evaluator and the trainer know that one)."""
        from tunery_gateway.app import create_app
        from tunery_gateway.testing import ServerThread

        self.gateway = ServerThread(create_app(self.gateway_settings), port=self.gateway.port).start()
        return self.gateway

    def healthy(self) -> None:
        """Back as the next test expects it, whatever this one stopped: the gateway serving both models, and the
        evaluator running with the session's environment."""
        try:
            up = self.tuned in self.served()
        except httpx.TransportError:
            up = False
        if not up:
            self.gateway.stop()
            self.start_gateway()
            wait_served(self.gateway.url, self.tuned)
        if self.evaluator.proc is None or self.evaluator.proc.poll() is not None:
            self.evaluator.start()


def wait_served(url: str, model: str, timeout: float = 30) -> None:
    from tunery_evaluator.testing import wait_until

    def served() -> bool:
        try:
            resp = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
        except httpx.TransportError:
            return False
        return model in [m["id"] for m in resp.json()["data"]]

    wait_until(f"{model} served at {url}", served, timeout)


def publish_success(loop: LoopThread, nats_url: str, job_id: str, adapter_path: str) -> None:
    """A job-succeeded event, which makes the gateway serve the adapter. Not the trainer's: the trainer drops it
    (the job is cancelled, and a state change proposed from outside the service that is illegal there is ignored).
    """
    async def go() -> None:
        nc = await events.connect(nats_url, name="test-evaluation")
        try:
            await events.ensure_stream(nc)
            ev = tpb.JobEvent(job_id=job_id, sequence=9, level="info", message="done",
                              state_change=tpb.StateChange(from_state=common_pb2.JOB_STATE_RUNNING,
                                                           to_state=SUCCEEDED, adapter_path=adapter_path))
            await events.EventPublisher(nc, source="test-evaluation").publish(
                "job.event", job_id, ev, event_id=f"job.{job_id}.test.succeeded")
        finally:
            await nc.close()

    loop.run(go())


@contextmanager
def evaluation_side(stack: Stack) -> Iterator[Evaluation]:
    from tunery_gateway.app import create_app
    from tunery_gateway.settings import GatewaySettings
    from tunery_gateway.testing import ServerThread

    tmp = stack.data_dir
    gw_settings = GatewaySettings(
        data_dir=tmp / "gateway", base_models=str(stack.tiny_model), nats_url=stack.nats_url, database_url="",
        admin_api_key=GATEWAY_KEY, internal_api_key=INTERNAL_KEY, dataset_addr=stack.dataset_addr, torch_threads=1,
        artifacts_dir=str(tmp / "artifacts"), default_max_tokens=8,
    )  # fmt: skip
    gateway = ServerThread(create_app(gw_settings)).start()
    try:
        ev = _evaluation_on(stack, gateway, gw_settings)
    except BaseException:
        gateway.stop()
        raise
    try:
        yield ev
    finally:
        ev.events.close()
        ev.evaluator.close()
        ev.gateway.stop()


def _evaluation_on(stack: Stack, gateway: ServerThread, gw_settings: Any) -> Evaluation:
    from tunery_evaluator.testing import EvaluatorProcess
    from tunery_gateway.testing import make_adapter

    tmp = stack.data_dir
    # The adapter: a trainer job cancelled at once gives it an id (the trainer's event consumer retries events about
    # jobs it does not know); a succeeded event about that job, naming an adapter folder of the tests' own, makes
    # the gateway serve it. Should a session worker be quick enough to run the tiny echo job first, it only
    # trains it: the adapter is elsewhere.
    job = stack.create(stack.spec(stack.make_version(n=12), hyperparameters=tpb.Hyperparameters(n_epochs=1,
                                                                                                 batch_size=4)))
    with contextlib.suppress(grpc.RpcError):  # it ended already
        stack.trainer.CancelJob(tpb.CancelJobRequest(job_id=job.id))
    stack.wait_state(job.id, common_pb2.JOB_STATE_CANCELLED, common_pb2.JOB_STATE_SUCCEEDED)
    tuned = f"ft:{stack.tiny_model.name}:eval:{job.id}"
    adapter = f"evaluation-tests/{job.id}/adapter"
    make_adapter(stack.tiny_model, tmp / "artifacts" / adapter, seed=1, base_model=str(stack.tiny_model.resolve()),
                 fine_tuned_model=tuned, job_id=job.id)
    publish_success(stack.loop, stack.nats_url, job.id, adapter)
    wait_served(gateway.url, tuned)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNERY_", "OTEL_"))}
    env.update(
        TUNERY_DATA_DIR=str(tmp / "evaluator"), TUNERY_NATS_URL=stack.nats_url,
        TUNERY_EVALUATOR_DATASET_ADDR=stack.dataset_addr,
        TUNERY_EVALUATOR_TRAINER_ADDR=f"127.0.0.1:{stack.trainer_app.port}",
        TUNERY_EVALUATOR_GATEWAY_URL=f"{gateway.url}/v1", TUNERY_EVALUATOR_GATEWAY_API_KEY=INTERNAL_KEY,
        TUNERY_EVALUATOR_ACK_WAIT_SECONDS="2", TUNERY_EVALUATOR_LOG_LEVEL="INFO",
    )  # fmt: skip
    port = int(stack.evaluator_addr.rsplit(":", 1)[1])
    evaluator = EvaluatorProcess(env, tmp / "evaluator.log", port).start()
    log = EventLog(stack.loop, stack.nats_url, "tunery.events.evaluation.>")
    return Evaluation(stack, gateway, gw_settings, evaluator, log, tuned, env)
