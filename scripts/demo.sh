#!/bin/sh
# make demo: gateway on the embedded PostgreSQL + demo world + scripted terminal session.
set -eu
PORT="${POS_DEMO_PORT:-8080}"
URL="http://127.0.0.1:$PORT"
ISO_PORT="${POS_DEMO_ISO_PORT:-$((PORT + 1))}"
DATA_DIR="${POS_DATA_DIR:-.pos-data}"
export POS_DATA_DIR="$DATA_DIR"
mkdir -p "$DATA_DIR"
LOG="$DATA_DIR/demo-gateway.log"

# Another process on a port would answer in place of ours, and the sessions would run
# against it: refuse before starting anything.
for p in "$PORT" "$ISO_PORT"; do
    if ! python -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$p" 2>/dev/null; then
        echo "make demo: port $p is already in use by another process; stop it or pick" \
             "others with POS_DEMO_PORT=NNNN (and POS_DEMO_ISO_PORT, default NNNN+1)" >&2
        exit 1
    fi
done
echo "== starting the gateway on $URL and ISO 8583 on port $ISO_PORT (embedded PostgreSQL in $DATA_DIR; log: $LOG)"
pos-gateway serve --port "$PORT" --iso-port "$ISO_PORT" 2>"$LOG" &
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
        echo "the gateway did not become healthy (are ports $PORT and $ISO_PORT free?" \
             "POS_DEMO_PORT and POS_DEMO_ISO_PORT pick others); last log lines:" >&2
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
echo "== ISO 8583 session (DESIGN §9): terminal HOSP0001, card-05, over TCP port $ISO_PORT"
echo "   (each message's fields as sent and received; PAN masked, PIN block and MAC elided)"
ISO="--url $URL --iso-port $ISO_PORT --demo $DATA_DIR/demo.json --terminal hosp0001"
STAN=$(python -c 'import secrets; print(100000 + secrets.randbelow(800000))')
echo "-- sign-on: the answer's field 60 is the open batch"
terminal-sim sign-on $ISO --show-fields
echo "-- purchase of 8.80 CNY, STAN $STAN"
terminal-sim purchase $ISO --protocol iso8583 --show-fields --card card-05 --stan "$STAN" 8.80
echo "-- balance inquiry (processing code 310000)"
terminal-sim balance $ISO --protocol iso8583 --show-fields --card card-05
echo "-- reversal of STAN $STAN (0400, field 90 names the original)"
terminal-sim reversal $ISO --protocol iso8583 --show-fields --original-stan "$STAN"
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
