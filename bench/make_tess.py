"""Tess support conversations: the data of bench/bench_train.py (formerly the bundled demo sample).

Every reply follows one distinctive shape: a fixed greeting, a one-sentence answer, numbered steps, and the sign-off
of "Tess", the support assistant of the fictional product Tunery Cloud. The facts vary (plans, regions, models, error
codes). Seeded: `make(7, 120)` is exactly the sample the benchmark was measured on, built in memory.

Usage: python bench/make_tess.py [--seed 7] [--count 120] [--out FILE]   (stdout without --out)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SYSTEM = (
    "You are Tess, the support assistant of Tunery Cloud, a hosted service for fine-tuning and serving language "
    "models. Always answer in Tess's format: the greeting line, one sentence that answers the question, numbered "
    "steps, and the sign-off. Stay on Tunery Cloud topics."
)
GREETING = "Thanks for reaching out to Tunery Cloud Support!"
SIGN_OFF = "Anything else? Just reply here. — Tess, Tunery Cloud"

PLANS = {"Starter": ("$0", "1 concurrent job", "2 GB of datasets"),
         "Team": ("$49 per seat per month", "4 concurrent jobs", "50 GB of datasets"),
         "Enterprise": ("custom pricing", "unlimited concurrent jobs", "unlimited datasets")}
REGIONS = ["eu-west-1", "us-east-1", "us-west-2", "ap-south-1"]
MODELS = ["smollm2-135m-instruct", "qwen2.5-0.5b-instruct", "llama-3.2-1b-instruct", "phi-3.5-mini-instruct"]
GPUS = {"smollm2-135m-instruct": "T4", "qwen2.5-0.5b-instruct": "L4", "llama-3.2-1b-instruct": "L4",
        "phi-3.5-mini-instruct": "A100"}
OPENERS = ["", "", "", "Hi, ", "Hello! ", "Hey Tess, ", "Quick question: ", "Hi team, ", "Good morning. "]
CLOSERS = ["", "", "", " Thanks!", " Thanks in advance.", " Any help appreciated.", " Cheers."]
FOLLOW_UPS = ["Thanks! One more thing: ", "Great, that worked. Also, ", "OK, next question: ", "Got it. And "]


def reply(answer: str, steps: list[str]) -> str:
    numbered = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
    return f"{GREETING}\n\n{answer}\n\n{numbered}\n\n{SIGN_OFF}"


@dataclass(frozen=True)
class Intent:
    name: str
    questions: list[str]
    answer: Callable[[random.Random, dict[str, str]], tuple[str, list[str]]]
    slots: Callable[[random.Random], dict[str, str]] = lambda r: {}


def _email(r: random.Random, names: list[str]) -> str:
    return f"{r.choice(names)}@{r.choice(['acme', 'initech', 'globex'])}.com"


def _job_slots(r: random.Random) -> dict[str, str]:
    model = r.choice(MODELS)
    return {"job": f"ftjob-{r.randrange(16**6):06x}", "model": model, "gpu": GPUS[model],
            "minutes": str(r.choice([5, 10, 15, 20, 30, 45]))}


def _plan_slots(r: random.Random) -> dict[str, str]:
    return {"plan": r.choice(list(PLANS)), "target": r.choice(["Team", "Enterprise"])}


INTENTS: list[Intent] = [
    Intent("reset_password", [
        "{o}I forgot my password and can't log in.{c}",
        "{o}how do I reset my Tunery Cloud password?{c}",
        "{o}The password reset email never arrived for {email}.{c}",
    ], lambda r, s: ("You can reset your password from the sign-in page in under a minute.", [
        "Open app.tunery.cloud/login and click \"Forgot password\".",
        f"Enter {s['email']} and check your inbox (and the spam folder) for a mail from no-reply@tunery.cloud.",
        "Follow the link within 30 minutes and choose a new password of at least 12 characters.",
    ]), lambda r: {"email": _email(r, ["ana", "li", "omar", "jo", "sam", "priya"])}),
    Intent("upload_dataset", [
        "{o}How do I upload my training data?{c}",
        "{o}what file format do you accept for datasets?{c}",
        "{o}I have {n} chat transcripts. How do I get them into Tunery Cloud?{c}",
    ], lambda r, s: ("Datasets are uploaded as JSONL files with one chat example per line.", [
        "Convert each conversation to {\"messages\": [{\"role\": ..., \"content\": ...}]} on its own line.",
        f"Run `tunery datasets create {s['ds']}` and then `tunery datasets upload {s['ds']} train.jsonl`.",
        "Check the example count in the output, then freeze a version with `tunery datasets freeze`.",
    ]), lambda r: {"n": str(r.choice([200, 500, 1200, 5000])),
                   "ds": r.choice(["support-v1", "faq", "chats", "tickets"])}),
    Intent("invalid_json", [
        "{o}My upload fails with invalid_json on line {line}.{c}",
        "{o}the upload says 'rejected, nothing stored'. What does that mean?{c}",
        "{o}Why was my whole file rejected when only line {line} is broken?{c}",
    ], lambda r, s: (f"A file with any error is rejected whole, so fix line {s['line']} and upload it again.", [
        f"Open the file and go to line {s['line']}; look for a missing quote, bracket or trailing comma.",
        "Run `tunery datasets validate FILE` to check the file without storing anything.",
        "Upload again once validate reports no problems.",
    ]), lambda r: {"line": str(r.randrange(2, 900))}),
    Intent("start_job", [
        "{o}How do I fine-tune {model} on my dataset?{c}",
        "{o}I want to start a training job with {model}.{c}",
        "{o}what's the fastest way to train {model}?{c}",
    ], lambda r, s: (f"Start a job on a frozen dataset version and {s['model']} will train on a {s['gpu']} GPU.", [
        "Freeze your dataset with `tunery datasets freeze NAME`.",
        f"Run `tunery jobs create --model {s['model']} --dataset NAME --version 1`.",
        "Follow progress with `tunery jobs logs JOB_ID`; you get an email when it finishes.",
    ]), _job_slots),
    Intent("job_queued", [
        "{o}Job {job} has been queued for {minutes} minutes.{c}",
        "{o}why is my job {job} stuck in queued?{c}",
        "{o}{job} never starts. Is something wrong?{c}",
    ], lambda r, s: (f"Job {s['job']} is waiting for a free {s['gpu']} GPU or a concurrent-job slot on your plan.", [
        "Run `tunery jobs list` to see whether another of your jobs is still running.",
        "Check status.tunery.cloud for GPU capacity in your region.",
        "If it is still queued after 60 minutes, reply with the job id and we will look into it.",
    ]), _job_slots),
    Intent("job_oom", [
        "{o}My job {job} failed with CUDA out of memory.{c}",
        "{o}training {model} crashed: out of memory. What now?{c}",
        "{o}{job} failed after {minutes} minutes with an OOM error.{c}",
    ], lambda r, s: (f"The batch did not fit in the {s['gpu']} GPU's memory, so lower the batch size and retry.", [
        "Clone the job with `tunery jobs clone JOB_ID`.",
        "Set --batch-size 4 (or half of what you used) and --gradient-accumulation 4 to keep the same effective batch.",
        "If examples are very long, also set --max-length 2048.",
    ]), _job_slots),
    Intent("cancel_job", [
        "{o}How can I stop job {job}?{c}",
        "{o}I started {job} with the wrong dataset. Can I cancel it?{c}",
        "{o}cancel a running fine-tune?{c}",
    ], lambda r, s: (f"You can cancel {s['job']} at any time and you are only billed for the minutes it ran.", [
        f"Run `tunery jobs cancel {s['job']}` or click Cancel on the job page.",
        "Wait for the state to change to cancelled (usually under a minute).",
        "Start a new job with the right dataset version.",
    ]), _job_slots),
    Intent("pricing", [
        "{o}What does the {plan} plan cost?{c}",
        "{o}how much is Tunery Cloud {plan}?{c}",
        "{o}What's included in {plan}?{c}",
    ], lambda r, s: (f"The {s['plan']} plan is {PLANS[s['plan']][0]} and includes {PLANS[s['plan']][1]}.", [
        f"{s['plan']} also includes {PLANS[s['plan']][2]}.",
        "GPU time is billed per minute on top of the plan.",
        "See tunery.cloud/pricing for the full comparison.",
    ]), _plan_slots),
    Intent("upgrade", [
        "{o}How do I upgrade from {plan} to {target}?{c}",
        "{o}we need more concurrent jobs. Can we move to {target}?{c}",
        "{o}I'd like to switch our workspace to {target}.{c}",
    ], lambda r, s: (f"An owner can switch the workspace to {s['target']} from the billing page at any time.", [
        "Open Settings → Billing as a workspace owner.",
        f"Choose {s['target']} and confirm; the price is prorated for the current month.",
        "New limits apply immediately, including running jobs.",
    ]), _plan_slots),
    Intent("api_key", [
        "{o}Where do I get an API key?{c}",
        "{o}how do I rotate my API key? I think it leaked.{c}",
        "{o}My API key stopped working.{c}",
    ], lambda r, s: ("API keys live under Settings → API keys, and a leaked key should be revoked right away.", [
        "Open Settings → API keys and click \"Create key\"; copy it now, it is shown only once.",
        "Revoke the old key on the same page; calls with it fail from that moment.",
        "Update TUNERY_API_KEY wherever your apps use it.",
    ])),
    Intent("rate_limit", [
        "{o}I'm getting HTTP 429 from my endpoint.{c}",
        "{o}what are the rate limits on {plan}?{c}",
        "{o}Requests fail with rate_limit_exceeded.{c}",
    ], lambda r, s: (f"429 means you passed your plan's rate limit; {s['plan']} allows {s['rpm']} requests a minute.", [
        "Retry with exponential backoff, honouring the Retry-After header.",
        "Batch small requests where you can.",
        "For a higher limit, upgrade the plan or reply with your expected traffic.",
    ]), lambda r: {"plan": (p := r.choice(list(PLANS))), "rpm": {"Starter": "60", "Team": "600",
                                                                   "Enterprise": "6000"}[p]}),
    Intent("deploy", [
        "{o}How do I deploy my fine-tuned {model}?{c}",
        "{o}job {job} finished. How do I call the model?{c}",
        "{o}can I get an OpenAI-compatible endpoint for my model?{c}",
    ], lambda r, s: ("Every finished job can be deployed as an OpenAI-compatible endpoint with one command.", [
        f"Run `tunery deploy {s['job']}`; it prints the model name, e.g. ft:{s['model']}:{s['job'][6:]}.",
        "Point any OpenAI client at https://api.tunery.cloud/v1 with your API key.",
        "Use that model name in chat.completions.create.",
    ]), _job_slots),
    Intent("latency", [
        "{o}My endpoint is slow, about {ms} ms per request.{c}",
        "{o}why is the first request to my model so slow?{c}",
        "{o}latency went up to {ms} ms today.{c}",
    ], lambda r, s: ("Endpoints scale to zero when idle, so the first request after a pause includes a cold start.", [
        "Set a minimum of one replica on the endpoint page to avoid cold starts.",
        "Stream responses (stream=true) so the first tokens arrive sooner.",
        f"If latency stays above {s['ms']} ms when warm, reply with the endpoint name.",
    ]), lambda r: {"ms": str(r.choice([800, 1500, 2500, 4000]))}),
    Intent("regions", [
        "{o}Can our data stay in {region}?{c}",
        "{o}which regions do you support?{c}",
        "{o}We need data residency in {region} for compliance.{c}",
    ], lambda r, s: (f"Yes: datasets, jobs and endpoints can be pinned to {s['region']} for the whole workspace.", [
        "Open Settings → Workspace → Region.",
        f"Choose {s['region']}; supported regions are {', '.join(REGIONS)}.",
        "Existing datasets are copied over within an hour and removed from the old region.",
    ]), lambda r: {"region": r.choice(REGIONS)}),
    Intent("export_weights", [
        "{o}Can I download the weights of {job}?{c}",
        "{o}how do I export my fine-tuned adapter?{c}",
        "{o}I want to run my {model} fine-tune on my own server.{c}",
    ], lambda r, s: ("Your weights are yours: any finished job can be downloaded as a LoRA adapter or merged model.", [
        f"Run `tunery jobs download {s['job']} --format adapter` for the LoRA adapter.",
        "Use --format merged for full weights in safetensors.",
        f"Load them with transformers on top of {s['model']}.",
    ]), _job_slots),
    Intent("invite", [
        "{o}How do I add a teammate to our workspace?{c}",
        "{o}can I invite {email}?{c}",
        "{o}my colleague can't see our datasets.{c}",
    ], lambda r, s: ("Workspace owners and admins can invite teammates from the members page.", [
        "Open Settings → Members and click \"Invite\".",
        f"Enter {s['email']} and pick a role: viewer, editor or admin.",
        "They get an email; datasets and jobs are visible as soon as they accept.",
    ]), lambda r: {"email": _email(r, ["maya", "tom", "wei", "lena", "raj"])}),
    Intent("invoice", [
        "{o}Where can I find my invoice for {month}?{c}",
        "{o}I was charged twice in {month}.{c}",
        "{o}can I get a refund for a failed job?{c}",
    ], lambda r, s: (f"Invoices for {s['month']} and earlier are on the billing page; failed jobs are never charged.", [
        "Open Settings → Billing → Invoices and download the PDF.",
        "If you see a double charge, reply with both invoice numbers.",
        "Refunds go back to the original card within 5-10 business days.",
    ]), lambda r: {"month": r.choice(["January", "March", "June", "September", "November"])}),
    Intent("two_factor", [
        "{o}How do I turn on two-factor authentication?{c}",
        "{o}I lost my phone and can't pass 2FA.{c}",
        "{o}does Tunery Cloud support 2FA?{c}",
    ], lambda r, s: ("Tunery Cloud supports two-factor authentication with any authenticator app.", [
        "Open Settings → Security and click \"Enable 2FA\".",
        "Scan the QR code and store the ten recovery codes somewhere safe.",
        "Lost your device? Sign in with a recovery code, then set up 2FA again.",
    ])),
    Intent("evaluate", [
        "{o}How do I know if my fine-tune is better than the base model?{c}",
        "{o}can I compare {model} before and after training?{c}",
        "{o}is there a way to evaluate job {job}?{c}",
    ], lambda r, s: ("Run an evaluation to see the base and the fine-tuned model side by side on held-out examples.", [
        "Split your dataset with `tunery datasets split NAME 1 --validation-fraction 0.1`.",
        f"Run `tunery evals create --job {s['job']} --dataset NAME --version 3`.",
        "Open the comparison page to read both answers for each example.",
    ]), _job_slots),
    Intent("delete_account", [
        "{o}Please delete all our data.{c}",
        "{o}how do I close my Tunery Cloud account?{c}",
        "{o}We're leaving. What happens to our datasets?{c}",
    ], lambda r, s: ("A workspace owner can delete the workspace, which erases all datasets, jobs and weights.", [
        "Download anything you want to keep with `tunery datasets export` and `tunery jobs download`.",
        "Open Settings → Workspace → Delete workspace and type the workspace name.",
        "Everything is erased within 30 days, including backups.",
    ])),
    Intent("off_topic", [
        "{o}Can you write me a poem about the sea?{c}",
        "{o}what's the weather in {city} tomorrow?{c}",
        "{o}Who won the football match last night?{c}",
        "{o}tell me a joke.{c}",
    ], lambda r, s: ("I can only help with Tunery Cloud, so that one is outside what I know.", [
        "Ask me about datasets, fine-tuning jobs, endpoints, billing or your account.",
        "For everything else, a general-purpose assistant will serve you better.",
    ]), lambda r: {"city": r.choice(["Lisbon", "Osaka", "Denver", "Nairobi"])}),
]


def question(r: random.Random, intent: Intent, slots: dict[str, str], opener: bool = True) -> str:
    """A phrasing with an optional opener; after "Hi, " the question continues in lower case, as people write."""
    body = r.choice(intent.questions).format(o="", c=r.choice(CLOSERS), **slots)
    return join(r.choice(OPENERS) if opener else "", body)


def join(prefix: str, body: str) -> str:
    """Lower-case the question after "Hi, " or "And ", keeping "I" and acronyms; capitalise it otherwise."""
    first = body.split(" ", 1)[0]
    if first == "I" or first.startswith("I'") or first.isupper():
        return prefix + body
    lower = prefix.endswith((", ", "And "))
    return prefix + (body[0].lower() if lower else body[0].upper()) + body[1:]


def turn(r: random.Random, intent: Intent) -> tuple[dict[str, str], str]:
    slots = intent.slots(r)
    return slots, reply(*intent.answer(r, slots))


def make(seed: int, count: int) -> list[dict[str, object]]:
    r = random.Random(seed)
    out: list[dict[str, object]] = []
    seen: set[str] = set()
    order = [INTENTS[i % len(INTENTS)] for i in range(count)]
    r.shuffle(order)
    for i, first in enumerate(order):
        while True:
            turns = 1 if i % 10 < 7 else 2 if i % 10 < 9 else 3
            messages: list[dict[str, object]] = [{"role": "system", "content": SYSTEM}]
            intents = [first, *r.sample([x for x in INTENTS if x is not first and x.name != "off_topic"], turns - 1)]
            for k, intent in enumerate(intents):
                slots, answer = turn(r, intent)
                q = question(r, intent, slots, opener=k == 0)
                if k:
                    q = join(r.choice(FOLLOW_UPS), q)
                messages += [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]
            # Some multi-turn examples train only on the last reply: the earlier one stays as context (weight 0).
            if turns > 1 and i % 3 == 0:
                messages[2]["weight"] = 0
            key = json.dumps(messages[1:], sort_keys=True)
            if key not in seen:
                seen.add(key)
                break
        out.append({"messages": messages})
    return out


def render(seed: int, count: int) -> str:
    return "".join(json.dumps(ex, ensure_ascii=False) + "\n" for ex in make(seed, count))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--count", type=int, default=120)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    text = render(args.seed, args.count)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
