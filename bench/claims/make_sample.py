#!/usr/bin/env python3
"""Build the citation check's labelled sample from the CMRC 2018 trial set.

    python3 bench/claims/make_sample.py ../shared/data/cmrc2018_trial.json EXTRACTIVE.jsonl \
        > bench/claims/cmrc-trial-labelled.jsonl

EXTRACTIVE.jsonl is `zhiku eval answers --claims-out` of the extractive path (no generator) on
the same file, ingested with `zhiku ingest --qa-contexts`. Labels are by construction, each
record's `note` says which:

- qa-own: a question turned into a claim with its gold answer in place of the question word
  (谁 → 王五), checked against the question's own paragraph, which holds the answer:
  supported. These are paraphrases, as a generator writes them.
- qa-other: the same claim against the paragraph of the trial set, other than its own, that
  shares the most character pairs with it (the nearest topic) and does not hold the gold
  answer: unsupported.
- quote: a quoted sentence of the extractive answer against its passage: supported.
- quote-number: the same sentence with one number changed: unsupported.

Deterministic (seeded), so the file can be rebuilt and checked.
"""
import json
import random
import re
import sys

WH = ["什么时候", "什么地方", "哪一年", "哪一天", "哪个", "哪些", "哪里", "哪年", "多少", "什么", "哪位",
      "几个", "几", "谁", "哪"]


def claim_of(question, answer):
    q = question.strip().rstrip("？?。 ")
    for w in WH:
        k = q.find(w)
        if k >= 0:
            return q[:k] + answer + q[k + len(w):]
    return None


def pairs(text):
    return {text[k:k + 2] for k in range(len(text) - 1)}


def nearest_other(claim, own, gold, contexts):
    want = pairs(claim)
    best = max((c for c in contexts if c != own and gold not in c),
               key=lambda c: len(want & pairs(c)))
    return best


def change_number(sentence, rng):
    nums = list(re.finditer(r"\d+", sentence))
    if not nums:
        return None
    m = rng.choice(nums)
    v = int(m.group())
    new = v + rng.choice([1, 2, 3, 7, 10]) if v < 1000 else v + rng.choice([1, 2, 5, 10])
    return sentence[: m.start()] + str(new) + sentence[m.end():]


def main():
    rng = random.Random(2018)
    data = json.load(open(sys.argv[1], encoding="utf-8"))["data"]
    quotes = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8") if l.strip()]
    out = []
    qa = []
    contexts = [p["context"] for art in data for p in art["paragraphs"]]
    for art in data:
        for p in art["paragraphs"]:
            for q in p["qas"]:
                gold = q["answers"][0]["text"].strip().rstrip("。，；") if q["answers"] else ""
                c = claim_of(q["question"], gold) if 0 < len(gold) <= 20 else None
                if not c or len(c) < 8:
                    continue
                qa.append((q["id"], c, p["context"], gold))
    rng.shuffle(qa)
    own = qa[:25]
    for qid, c, ctx, _ in own:
        out.append({"question_id": qid, "mode": "qa-own", "sentence": c, "passages": [ctx],
                    "supported": True, "note": "qa-own: gold answer in the question's own paragraph"})
    for qid, c, ctx, gold in qa[25:50]:
        out.append({"question_id": qid, "mode": "qa-other", "sentence": c,
                    "passages": [nearest_other(c, ctx, gold, contexts)], "supported": False,
                    "note": "qa-other: the nearest other paragraph, without the gold answer"})
    rng.shuffle(quotes)
    with_numbers = [x for x in quotes if re.search(r"\d", x["sentence"])]
    plain = [x for x in quotes if x not in with_numbers[:25]]
    for x in plain[:25]:
        out.append({"question_id": x["question_id"], "mode": "quote", "sentence": x["sentence"],
                    "passages": x["passages"], "supported": True,
                    "note": "quote: a sentence of its own passage"})
    for x in with_numbers[:25]:
        s = change_number(x["sentence"], rng)
        out.append({"question_id": x["question_id"], "mode": "quote-number", "sentence": s,
                    "passages": x["passages"], "supported": False,
                    "note": "quote-number: one number changed"})
    for r in out:
        print(json.dumps(r, ensure_ascii=False))


if __name__ == "__main__":
    main()
