#!/usr/bin/env python3
"""Summarise an Autobahn|Testsuite fuzzingclient report for ringws.

Reads <reports>/index.json (and the per-case JSON files beside it), prints
counts per behaviour and per close behaviour, then every case whose
behaviour or close behaviour is not OK, with its description, what the
suite expected and what ringws did.

Exit status: 0 when no case is FAILED and no close behaviour is FAILED or
UNCLEAN; 1 otherwise; 2 when the report is missing or holds no case.

Usage: summarise.py REPORT_DIR [--agent ringws] [--markdown]
"""

import argparse
import json
import os
import sys
from collections import Counter

BEHAVIOURS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
# Close behaviours that mean ringws closed the connection wrongly.
BAD_CLOSE = {"FAILED", "UNCLEAN", "WRONG CODE"}


def case_sort_key(case_id):
    return tuple(int(part) for part in case_id.split("."))


def shorten(text, limit=160):
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


OPCODE_NAMES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}


def describe_sent_by_ringws(detail):
    """What ringws sent back: its frames from the wire log when the suite kept
    one (exact payload sizes), else the messages the suite recorded (whose
    payloads the report may abbreviate)."""
    frames = [entry for entry in detail.get("wirelog") or [] if entry[0] == "RF"]
    if frames:
        parts = []
        for frame in frames:
            length, opcode, fin = frame[1][0], frame[2], frame[3]
            parts.append(
                "%s%s %d B" % (OPCODE_NAMES.get(opcode, "opcode %d" % opcode), "" if fin else " (no FIN)", length)
            )
        return "frames " + ", ".join(parts)
    parts = []
    for event in detail.get("received") or []:
        if event[0] == "message":
            binary = event[2] if len(event) > 2 else False
            parts.append("%s message" % ("binary" if binary else "text"))
        else:
            parts.append(event[0])
    return ", ".join(parts) if parts else "no message"


def load_case(report_dir, entry):
    path = os.path.join(report_dir, entry["reportfile"])
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report_dir", help="directory holding index.json")
    parser.add_argument("--agent", default="ringws")
    parser.add_argument(
        "--markdown", action="store_true", help="print Markdown tables"
    )
    args = parser.parse_args()

    index_path = os.path.join(args.report_dir, "index.json")
    try:
        with open(index_path) as handle:
            index = json.load(handle)
    except (OSError, ValueError) as error:
        print("no usable report at %s: %s" % (index_path, error), file=sys.stderr)
        return 2
    cases = index.get(args.agent, {})
    if not cases:
        print("report holds no case for agent %r" % args.agent, file=sys.stderr)
        return 2

    behaviour = Counter(entry["behavior"] for entry in cases.values())
    close = Counter(entry["behaviorClose"] for entry in cases.values())
    close_names = BEHAVIOURS + sorted(set(close) - set(BEHAVIOURS))

    if args.markdown:
        print("| | " + " | ".join(BEHAVIOURS) + " | total |")
        print("|---" * (len(BEHAVIOURS) + 2) + "|")
        print(
            "| behavior | "
            + " | ".join(str(behaviour.get(name, 0)) for name in BEHAVIOURS)
            + " | %d |" % len(cases)
        )
        print()
        print("| behaviorClose | count |")
        print("|---|---|")
        for name in close_names:
            if close.get(name):
                print("| %s | %d |" % (name, close[name]))
    else:
        print("agent %s: %d cases" % (args.agent, len(cases)))
        print(
            "behavior:      "
            + "  ".join("%s=%d" % (name, behaviour.get(name, 0)) for name in BEHAVIOURS)
        )
        print(
            "behaviorClose: "
            + "  ".join("%s=%d" % (name, close[name]) for name in close_names if close.get(name))
        )

    not_ok = [
        case_id
        for case_id, entry in cases.items()
        if entry["behavior"] != "OK" or entry["behaviorClose"] != "OK"
    ]
    if not_ok:
        print()
        print("## Cases not OK" if args.markdown else "cases not OK:")
    for case_id in sorted(not_ok, key=case_sort_key):
        entry = cases[case_id]
        detail = load_case(args.report_dir, entry)
        lines = [
            "%s  behavior=%s  behaviorClose=%s  (%d ms)"
            % (case_id, entry["behavior"], entry["behaviorClose"], entry.get("duration", 0)),
            "description: %s" % detail.get("description", "?"),
            "suite says:  %s" % detail.get("result", "?"),
            "close:       %s" % detail.get("resultClose", "?"),
            "ringws sent: %s; close code %s, reason %r; clean=%s"
            % (
                describe_sent_by_ringws(detail),
                detail.get("remoteCloseCode"),
                detail.get("remoteCloseReason"),
                detail.get("wasClean"),
            ),
        ]
        if args.markdown:
            print()
            print("- **%s**" % lines[0])
            for line in lines[1:]:
                print("  - %s" % line)
        else:
            print()
            print("\n    ".join(lines))

    failed = behaviour.get("FAILED", 0) + sum(close.get(name, 0) for name in BAD_CLOSE)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
