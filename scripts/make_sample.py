"""Generate core/src/tunery/data/sample_chat.jsonl, the chat dataset bundled for demos (`tunery datasets upload
DATASET @sample`), and sample_schema.json, the JSON Schema of its answers.

The task: triage a support ticket of Tunery Cloud (a hosted fine-tuning service) into one JSON object
{"category", "priority", "reply"}. The labels follow rules a model can learn from a few hundred examples and a
135M base model does not know: the category is the product area the ticket is about (keywords: invoice -> billing,
password -> account, upload -> datasets, job -> training, endpoint -> serving), the priority is set by the
urgency words (outage / ASAP -> urgent, blocked / today -> high, none -> medium, no rush -> low). Wording, names,
ids and the order of the sentences vary, so what is learnt is the rule, not lines. Examples are short (about 120
tokens with the chat template) so a demo fine-tune takes minutes on a CPU. Seeded: the files change only when this
script does.

Usage: python scripts/make_sample.py [--check] [--seed 0] [--count 180]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "core" / "src" / "tunery" / "data"
OUT = DATA / "sample_chat.jsonl"
SCHEMA_OUT = DATA / "sample_schema.json"

CATEGORIES = ("billing", "account", "datasets", "training", "serving")
PRIORITIES = ("low", "medium", "high", "urgent")
SYSTEM = (
    "Triage the Tunery Cloud support ticket. Answer with one JSON object only: "
    '{"category": "billing|account|datasets|training|serving", "priority": "low|medium|high|urgent", '
    '"reply": "<one short sentence>"}'
)
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Tunery sample: triaged support ticket",
    "type": "object",
    "properties": {
        "category": {"enum": list(CATEGORIES)},
        "priority": {"enum": list(PRIORITIES)},
        "reply": {"type": "string", "minLength": 1, "maxLength": 200},
    },
    "required": ["category", "priority", "reply"],
    "additionalProperties": False,
}

# What the customer reports, per product area; {slots} are filled below.
ISSUES: dict[str, list[str]] = {
    "billing": [
        "I was charged twice for {month}.",
        "the invoice for {month} shows {amount} but our plan costs less.",
        "how do I get a refund for the {amount} charge?",
        "our credit card was declined when paying the invoice.",
        "can you add our VAT number to the {month} invoice?",
        "why did my bill go up to {amount} this month?",
        "please switch our billing to yearly payments.",
        "where can I download the receipt for {month}?",
    ],
    "account": [
        "I can't log in, the password reset email never arrives.",
        "{name} cannot accept the invite to our workspace.",
        "I lost my phone and can't pass two-factor authentication.",
        "how do I change the email address of my account?",
        "my account got locked after too many sign-in attempts.",
        "SSO sign-in fails for everyone at {company}.",
        "please remove {name} from our team, they left {company}.",
        "I need to transfer account ownership to {name}.",
    ],
    "datasets": [
        "my dataset upload fails with invalid_json on line {line}.",
        "the JSONL file {file} was rejected and nothing was stored.",
        "dataset {file} shows {count} examples but the file has more.",
        "how do I remove duplicate examples from my dataset?",
        "exporting dataset version {version} gives an empty file.",
        "the upload of {file} hangs at {pct} percent.",
        "can I split a dataset into train and validation parts?",
        "freezing dataset version {version} returns an error.",
    ],
    "training": [
        "fine-tuning job {job} failed with out of memory.",
        "my training job {job} has been queued for {minutes} minutes.",
        "the training loss of {job} does not go down.",
        "job {job} stopped at epoch {epoch} without an error.",
        "how many epochs should I use to fine-tune {model}?",
        "I can't resume my paused training job {job}.",
        "the checkpoint of job {job} is missing.",
        "can I fine-tune {model} with a larger batch size?",
    ],
    "serving": [
        "my endpoint for {model} returns HTTP 500.",
        "requests to our deployed model take {seconds} seconds.",
        "the endpoint answers with rate_limit_exceeded.",
        "the deployed model {model} gives empty responses.",
        "how do I call my deployed model with the OpenAI client?",
        "our endpoint went down after the new deployment.",
        "streaming responses from my endpoint stop halfway.",
        "can I scale my {model} endpoint to two replicas?",
    ],
}

# How pressing it is: the only signal of the priority. Medium tickets carry no urgency words, or neutral ones.
URGENCY: dict[str, list[str]] = {
    "urgent": [
        "This is urgent, our production is down!",
        "URGENT: all our customers are affected right now.",
        "Please help ASAP, this is an emergency.",
        "We are losing money every minute, fix it immediately!",
        "Critical outage for our users, please act now.",
    ],
    "high": [
        "This is blocking our team today.",
        "We need it fixed before our launch tomorrow.",
        "It blocks our release, please look soon.",
        "Our whole team is stuck until this works.",
        "We have a deadline today, so this matters.",
    ],
    "medium": ["", "", "", "Could you take a look?", "Please advise.", "Thanks for checking."],
    "low": [
        "No rush, whenever you have time.",
        "Not urgent at all, just curious.",
        "Low priority, next week is fine.",
        "Just wondering, no hurry.",
        "It can wait until next week.",
    ],
}
OPENERS = ["", "", "Hi, ", "Hello, ", "Hey team, ", "Good morning, "]

REPLIES: dict[str, list[str]] = {
    "billing": ["Our billing team will check your invoice.", "We are reviewing the charges on your account."],
    "account": ["We will help you get back into your account.", "Our team is checking your account settings."],
    "datasets": ["We are looking into your dataset.", "Our team will check the file and the dataset."],
    "training": ["We are checking your training job.", "Our team is looking at the job's logs."],
    "serving": ["We are investigating your endpoint.", "Our team is checking the deployment."],
}
REPLY_PREFIX = {"urgent": "On it now: ", "high": "Thanks, ", "medium": "", "low": "No problem, "}

SLOTS = {
    "month": ["January", "March", "May", "July", "October", "December"],
    "amount": ["$49", "$120", "$312", "$980", "$2,400"],
    "name": ["Ana", "Li", "Omar", "Priya", "Tom", "Wei", "Lena"],
    "company": ["Acme", "Initech", "Globex", "Umbrella"],
    "file": ["tickets.jsonl", "chats.jsonl", "faq.jsonl", "train.jsonl", "support.jsonl"],
    "model": ["smollm2-135m", "qwen2.5-0.5b", "llama-3.2-1b", "phi-3.5-mini"],
}


def fill(r: random.Random, template: str) -> str:
    values = {k: r.choice(v) for k, v in SLOTS.items()}
    values.update(line=str(r.randrange(2, 900)), count=str(r.randrange(10, 500)), version=str(r.randrange(1, 9)),
                  pct=str(r.choice([40, 60, 75, 90, 99])), job=f"ftjob-{r.randrange(16**4):04x}",
                  minutes=str(r.choice([20, 45, 90, 180])), epoch=str(r.randrange(1, 4)),
                  seconds=str(r.choice([8, 15, 30, 60])))
    return template.format(**values)


def ticket(r: random.Random, category: str, priority: str) -> str:
    """The issue, with an optional greeting, and the urgency words before or after it."""
    issue = fill(r, r.choice(ISSUES[category]))
    urgency = r.choice(URGENCY[priority])
    if urgency and r.random() < 0.3:
        return f"{urgency} {issue[0].upper()}{issue[1:]}"
    opener = r.choice(OPENERS)
    issue = opener + (issue if opener else issue[0].upper() + issue[1:])
    return f"{issue} {urgency}" if urgency else issue


def answer(r: random.Random, category: str, priority: str) -> str:
    reply = r.choice(REPLIES[category])
    prefix = REPLY_PREFIX[priority]
    if prefix:
        reply = prefix + reply[0].lower() + reply[1:]
    return json.dumps({"category": category, "priority": priority, "reply": reply}, ensure_ascii=False)


def make(seed: int, count: int) -> list[dict[str, object]]:
    """`count` distinct tickets; categories and priorities balanced (every pair about equally often)."""
    r = random.Random(seed)
    pairs = [(c, p) for c in CATEGORIES for p in PRIORITIES]
    order = [pairs[i % len(pairs)] for i in range(count)]
    r.shuffle(order)
    out: list[dict[str, object]] = []
    seen: set[str] = set()
    for category, priority in order:
        text = ticket(r, category, priority)
        while text in seen:
            text = ticket(r, category, priority)
        seen.add(text)
        out.append({"messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": text},
            {"role": "assistant", "content": answer(r, category, priority)},
        ]})
    return out


def render(seed: int, count: int) -> dict[Path, str]:
    return {
        OUT: "".join(json.dumps(ex, ensure_ascii=False) + "\n" for ex in make(seed, count)),
        SCHEMA_OUT: json.dumps(SCHEMA, indent=2) + "\n",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=180)
    ap.add_argument("--check", action="store_true", help="fail when the committed files differ from the script")
    args = ap.parse_args()
    files = render(args.seed, args.count)
    if args.check:
        stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
        for p in stale:
            print(f"{p} is stale: run python scripts/make_sample.py", file=sys.stderr)
        return 1 if stale else 0
    for p, text in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    print(f"wrote {args.count} examples to {OUT} and the answer schema to {SCHEMA_OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
