"""Talk to zhiku's OpenAI-compatible API with the real `openai` client library and print
what came back as one JSON object; tests/openai_api.rs starts the server and checks it.

    python tests/openai_client.py --base-url http://127.0.0.1:PORT/v1 --token zk_... \
        --other-token zk_... --model hr --question "..."

`--token` may read `--model`; `--other-token` belongs to a user of another group, who may
not. Needs `openai` (scripts/install-test-tools.sh). The client never retries, so each
request the test expects is made exactly once.
"""

import argparse
import json
import sys

import openai
from openai import OpenAI


def client(base_url, token):
    return OpenAI(base_url=base_url, api_key=token, max_retries=0, timeout=60)


def error_of(e):
    return {"status": e.status_code, "code": e.code, "type": e.type, "message": e.message}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--other-token", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--question", required=True)
    args = p.parse_args()

    me = client(args.base_url, args.token)
    other = client(args.base_url, args.other_token)
    messages = [
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": args.question},
    ]
    out = {"openai_version": openai.__version__}

    out["models"] = [m.id for m in me.models.list()]
    out["other_models"] = [m.id for m in other.models.list()]

    r = me.chat.completions.create(model=args.model, messages=messages, seed=7)
    d = r.to_dict()
    out["completion"] = {
        "object": r.object,
        "model": r.model,
        "content": r.choices[0].message.content,
        "role": r.choices[0].message.role,
        "finish_reason": r.choices[0].finish_reason,
        "usage": r.usage.to_dict() if r.usage else None,
        "zhiku": d.get("zhiku"),
    }

    chunks = [
        c.to_dict()
        for c in me.chat.completions.create(
            model=args.model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=64,
        )
    ]
    with_choice = [c for c in chunks if c.get("choices")]
    out["stream"] = {
        "chunks": len(chunks),
        "objects": sorted({c["object"] for c in chunks}),
        "first_role": with_choice[0]["choices"][0]["delta"].get("role") if with_choice else None,
        "content": "".join(c["choices"][0]["delta"].get("content") or "" for c in with_choice),
        "finish_reasons": [
            c["choices"][0]["finish_reason"] for c in with_choice if c["choices"][0].get("finish_reason")
        ],
        "zhiku": [c["zhiku"] for c in chunks if "zhiku" in c],
        "zhiku_on_finish_chunk": all(
            ("zhiku" in c) == bool(c["choices"][0].get("finish_reason")) for c in with_choice
        ),
        "usage": chunks[-1].get("usage") if chunks else None,
    }

    try:
        other.chat.completions.create(model=args.model, messages=messages)
        out["other_completion"] = "answered"
    except openai.NotFoundError as e:
        out["other_completion"] = error_of(e)
    try:
        me.chat.completions.create(model="no-such-kb", messages=messages)
        out["missing_model"] = "answered"
    except openai.NotFoundError as e:
        out["missing_model"] = error_of(e)
    try:
        client(args.base_url, "zk_not_a_token").models.list()
        out["bad_token"] = "answered"
    except openai.AuthenticationError as e:
        out["bad_token"] = error_of(e)

    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
