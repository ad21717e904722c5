#!/usr/bin/env bash
# The key tables of docs/deck.md agree with the key table they are generated from
# (include/th/config/deck_keys.def): the file must equal what `torch-handle --deck-keys=FILE` makes
# of it. On a difference it prints the diff and the command that regenerates the tables.
# usage: check_deck_docs.sh DOCS -- COMMAND...   (COMMAND starts torch-handle, e.g. under mpiexec -n 1)
set -u
docs=$1
shift
[[ ${1:-} == -- ]] && shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! "$@" --deck-keys="$docs" > "$out"; then
  echo "FAIL: '$* --deck-keys=$docs' failed"
  exit 1
fi
if ! diff -u --label "$docs" --label "generated from include/th/config/deck_keys.def" "$docs" "$out"; then
  echo "FAIL: $docs and the key table include/th/config/deck_keys.def disagree (diff above)."
  echo "Regenerate its tables (from the source folder, after building):"
  echo "  build/bin/torch-handle --deck-keys=docs/deck.md > docs/deck.md.new && mv docs/deck.md.new docs/deck.md"
  exit 1
fi
echo "OK: $docs documents every deck key as include/th/config/deck_keys.def declares it"
