#!/bin/sh
# make demo: gateway on the embedded PostgreSQL + demo world + scripted terminal session.
set -eu
PORT="${POS_DEMO_PORT:-8080}"
URL="http://127.0.0.1:$PORT"
DATA_DIR="${POS_DATA_DIR:-.pos-data}"
export POS_DATA_DIR="$DATA_DIR"
mkdir -p "$DATA_DIR"
LOG="$DATA_DIR/demo-gateway.log"

# Another process on the port would answer /healthz in place of ours, and the scenario
# would run against it: refuse before starting anything.
if ! python -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$PORT" 2>/dev/null; then
    echo "make demo: port $PORT is already in use by another process; stop it or pick" \
         "another port with POS_DEMO_PORT=NNNN" >&2
    exit 1
fi
echo "== starting the gateway on $URL (embedded PostgreSQL in $DATA_DIR; log: $LOG)"
pos-gateway serve --port "$PORT" 2>"$LOG" &
GATEWAY=$!
stop() {
    kill "$GATEWAY" 2>/dev/null || true
    wait "$GATEWAY" 2>/dev/null || true
}
trap stop EXIT INT TERM

# Wait for /healthz, but give up at once if the gateway died (port taken, bad config).
waited=0
until terminal-sim wait --url "$URL" --timeout 1 2>/dev/null; do
    waited=$((waited + 1))
    if ! kill -0 "$GATEWAY" 2>/dev/null || [ "$waited" -ge 90 ]; then
        echo "the gateway did not become healthy (is port $PORT free? POS_DEMO_PORT picks" \
             "another); last log lines:" >&2
        tail -n 20 "$LOG" >&2
        exit 1
    fi
done
if ! kill -0 "$GATEWAY" 2>/dev/null; then
    echo "make demo: the gateway exited, yet $URL answers: another process took port $PORT" >&2
    exit 1
fi
echo "== loading the demo world"
pos-gateway demo-data --out "$DATA_DIR/demo.json" 2>>"$LOG"
echo "== demo world written to $DATA_DIR/demo.json (terminal keys and card PINs: keep private)"
echo "== scripted terminal session"
terminal-sim scenario scenarios/demo.toml --url "$URL" --demo "$DATA_DIR/demo.json"
echo "== ledger check: every balance recomputed from the journal"
pos-gateway verify-ledger 2>>"$LOG"
echo "== eligibility of card-10's holder, whose contributions stopped two months ago"
echo "   (the scenario above approved a purchase on that card: the individual account pays"
echo "   whatever the pooled-fund coverage)"
CARD10_SSN=$(python -c 'import json,sys; print(next(c["ssn"] for c in json.load(open(sys.argv[1]))["cards"] if c["alias"] == "card-10"))' "$DATA_DIR/demo.json")
pos-gateway eligibility --ssn "$CARD10_SSN" 2>>"$LOG"
echo "== web pages (DESIGN §11): logins to try"
python - "$DATA_DIR/demo.json" "$URL" <<'PY'
import json, sys
world, url = json.load(open(sys.argv[1])), sys.argv[2]
card = next(c for c in world["cards"] if c["alias"] == "card-01")
print(f"   cardholder pages  {url}/         ID number {card['ssn']}  password {card['password']}")
for op in world["operators"]:
    print(f"   office ({op['role']:7}) {url}/office/  user {op['username']:9} password {op['password']}")
PY
echo "   (the passwords stay valid: 'POS_DATA_DIR=$DATA_DIR make serve' serves these pages on"
echo "   port 8080 after this demo stops; $DATA_DIR/demo.json lists every card's password)"
echo "== stopping the gateway"
