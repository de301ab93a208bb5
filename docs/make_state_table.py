"""Render the E1381 link state table (lis_gateway.astm.link.TRANSITIONS) as Markdown.

Usage: python docs/make_state_table.py > docs/link-states.md
"""

from __future__ import annotations

from lis_gateway.astm.link import LOCAL_INPUTS, TRANSITIONS, LinkInput, LinkState


def main() -> None:
    """Print one Markdown table per state."""
    print("# E1381 link state table\n")
    print("Generated from `lis_gateway/astm/link.py` by `docs/make_state_table.py`; do not edit.")
    print("A pair not listed emits `UnexpectedInput` and resets to NEUTRAL "
          f"(local inputs {', '.join(sorted(i.value for i in LOCAL_INPUTS))} raise "
          "`LocalProtocolError` instead).\n")
    for state in LinkState:
        print(f"## {state.name}\n")
        print("| input | action | next state(s) |")
        print("|---|---|---|")
        for inp in LinkInput:
            row = TRANSITIONS.get((state, inp))
            if row is not None:
                method, allowed = row
                nxt = ", ".join(sorted(s.name for s in allowed))
                print(f"| {inp.value} | `{method.lstrip('_')}` | {nxt} |")
        print()


if __name__ == "__main__":
    main()
