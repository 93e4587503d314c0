#!/usr/bin/env bash
# Builds the DocC documentation of the two libraries, Mosquitto and MosquittoTesting, each from
# its own catalog and symbol graph, and fails on any DocC warning (a broken or ambiguous symbol
# link, an unknown article) and on any DocC note (content under a `##` heading where DocC wants
# `###`). Uses the toolchain's `docc` and `swift package dump-symbol-graph`: no plugin needed.
# Writes the rendered archives to .build/docc/<Module>.doccarchive (preview one with
# `docc preview Sources/<Module>/<Module>.docc --additional-symbol-graph-dir .build/docc/<Module>-symbols`).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v docc >/dev/null 2>&1 || { echo "check-docc: the toolchain's docc is missing" >&2; exit 1; }
dump_log=$(mktemp)
swift package dump-symbol-graph --minimum-access-level public >"$dump_log" 2>&1 || { cat "$dump_log" >&2; exit 1; }
rm -f "$dump_log"
graphs="$(swift build --show-bin-path)/../symbolgraph"
[ -d "$graphs" ] || graphs=".build/$(uname -m)-unknown-linux-gnu/symbolgraph"

status=0
for module in Mosquitto MosquittoTesting; do
    symbols=".build/docc/$module-symbols"
    rm -rf "$symbols" && mkdir -p "$symbols"
    # Only the module's own graphs (and its extensions of other modules' types).
    cp "$graphs/$module.symbols.json" "$symbols/"
    compgen -G "$graphs/$module@*.symbols.json" >/dev/null && cp "$graphs/$module"@*.symbols.json "$symbols/"
    log=$(mktemp)
    if ! docc convert "Sources/$module/$module.docc" \
        --additional-symbol-graph-dir "$symbols" \
        --fallback-display-name "$module" --fallback-bundle-identifier "$module" \
        --output-path ".build/docc/$module.doccarchive" \
        --analyze --warnings-as-errors >"$log" 2>&1; then
        status=1
    fi
    if grep -qE "^(warning|error|note):" "$log"; then
        cat "$log" >&2
        echo "check-docc: $module's documentation has DocC diagnostics (above)" >&2
        status=1
    else
        echo "check-docc: $module: no DocC diagnostics"
    fi
    rm -f "$log"
done
exit $status
