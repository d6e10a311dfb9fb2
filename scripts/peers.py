"""Python's `rule-engine` on the predicates of benches/peers.rs, over the
submissions that bench wrote (JSON lines), timed per evaluation.

Usage: python scripts/peers.py SUBMISSIONS.jsonl [ROUNDS]
Prints `peer: python-rule-engine ns/eval=X convert_ns/sub=0.0 matches=[...]`, the
same line format as the Rust peers, so scripts/bench can check agreement.
"""

import json
import sys
import time

import rule_engine

# Same order and meaning as PREDICATES in benches/peers.rs. `&.` reads through
# a missing object as null, like the engine's field paths.
PREDICATES = [
    ("blacklisted-country",
     'kyc&.result == "rejected" and kyc&.commentCode != null and '
     '[c for c in kyc.commentCode if c in ["blacklistCountry", "id_info_blacklist"]].length > 0'),
    ("bank-verification-failed",
     'bank_verification&.result == "fail"'),
    ("aml-red-flag-high",
     'aml&.currentstatus == "Red Flag" and aml&.risk_level_summary != null and '
     'aml.risk_level_summary.as_lower == "high"'),
    ("low-liveness",
     'kyc&.attempts != null and kyc.attempts.length > 0 and '
     '[a for a in kyc.attempts if a&.livenessScore == null or a.livenessScore >= 50].is_empty'),
]


def main():
    path = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with open(path) as f:
        subs = [json.loads(line) for line in f]
    ctx = rule_engine.Context(default_value=None)
    rules = [rule_engine.Rule(text, context=ctx) for _, text in PREDICATES]
    best = float("inf")
    matches = []
    for _ in range(rounds):
        matches = [0] * len(rules)
        t = time.perf_counter()
        for s in subs:
            for i, r in enumerate(rules):
                if r.matches(s):
                    matches[i] += 1
        best = min(best, time.perf_counter() - t)
    ns = best * 1e9 / (len(subs) * len(rules))
    print(f"peer: python-rule-engine ns/eval={ns:.1f} convert_ns/sub=0.0 matches={matches}")


if __name__ == "__main__":
    main()
