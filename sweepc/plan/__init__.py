"""Planning: a BuildGraph and the state store in, a Plan (what runs, and why) out.

    store.py      the SQLite state store (one row per job), runs, the build lock
    selection.py  targets, --where, --psets -> job ids (with their ancestors)
    planner.py    Merkle fingerprints -> Plan: jobs to run, each with its reasons
"""
