#!/bin/bash
# {{ rule }} job {{ pset.seq }}: {{ scheme }}, dt={{ dt }}, gamma={{ gamma }}
# jinja2 leaves the shell's own $VARIABLES alone (psweep's $$ escaping is not needed)
set -e
echo "running in $PWD on $(hostname)"
python3 "$SWEEPC_ROOT/oscillator.py" input.deck > trajectory.dat
