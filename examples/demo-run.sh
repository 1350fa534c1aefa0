#!/usr/bin/env bash
# The demo itself, on already-built binaries: examples/demo-run.sh BUILD_DIR
set -euo pipefail
BUILD="$(cd "$1" && pwd)"
AGENT="$BUILD/agent/delegate-agent"
CP="$BUILD/controlplane/delegate-controlplane"
AUDIT="$BUILD/audit/delegate-audit"
RUN="$(mktemp -d /tmp/delegate-demo-XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$RUN"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
say "Initialising a development control plane in $RUN/cp (dev CA, server cert, tokens, agent config)"
"$CP" init --dir "$RUN/cp" --listen "127.0.0.1:$PORT"
"$CP" serve --dir "$RUN/cp" >"$RUN/controlplane.log" 2>&1 &
PIDS+=($!)
URL="https://127.0.0.1:$PORT"
for _ in $(seq 100); do curl -sf --cacert "$RUN/cp/ca.pem" "$URL/healthz" >/dev/null && break; sleep 0.1; done
curl -sf --cacert "$RUN/cp/ca.pem" "$URL/healthz" >/dev/null || { echo "control plane did not start"; cat "$RUN/controlplane.log"; exit 1; }
echo "control plane: $URL (TLS 1.3 only)"

CFG="$RUN/cp/agent.yaml"
say "Creating an API key for the on-call SRE (shown once; the agent stores only a salted hash)"
KEY=$("$AGENT" api-key create --config "$CFG" --id sre-oncall-alice --scope runbooks:execute --role sre-oncall)
echo "key: ${KEY:0:20}… (hidden)"
"$AGENT" api-key list --config "$CFG"

say "A local stand-in for a third-party incident-ticket API (HTTPS, its own demo CA)"
# Steps reach it only through the agent's egress proxy: the runbook's step names
# tickets.example.com:443, which the demo points at the stand-in on loopback.
TPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=delegate-demo-tickets-ca \
  -keyout "$RUN/tickets-ca.key" -out "$RUN/tickets-ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout "$RUN/tickets.key" \
  -out "$RUN/tickets.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' >"$RUN/tickets.ext"
openssl x509 -req -in "$RUN/tickets.csr" -CA "$RUN/tickets-ca.pem" -CAkey "$RUN/tickets-ca.key" -CAcreateserial \
  -days 1 -extfile "$RUN/tickets.ext" -out "$RUN/tickets.pem" 2>/dev/null
TICKET_KEY="tk_live_$(openssl rand -hex 16)"
printf '%s' "$TICKET_KEY" >"$RUN/tickets-api-key"
python3 examples/demo/ticket_service.py --cert "$RUN/tickets.pem" --key "$RUN/tickets.key" \
  --api-key-file "$RUN/tickets-api-key" --journal "$RUN/tickets-journal.jsonl" --port "$TPORT" \
  >"$RUN/tickets.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -s --cacert "$RUN/tickets-ca.pem" "https://localhost:$TPORT/" >/dev/null && break; sleep 0.1; done
echo "ticket API stand-in: https://localhost:$TPORT (TLS 1.3 only)"
sed -e "s#tickets.example.com:443#localhost:$TPORT#g" examples/demo/incident-ticket.yaml >"$RUN/cp/runbooks/incident-ticket.yaml"
# The agent's policy for it: trust the stand-in's CA for http steps, and let egress reach
# loopback addresses (refused by default, like every private range).
sed -i -e 's#^  allow_sockets: \[\]#  egress_allow_cidrs: [127.0.0.0/8, "::1/128"]\n&#' "$CFG"
printf 'connectors:\n  ca_files: [%s]\nsecrets:\n  providers: [local]\n' "$RUN/tickets-ca.pem" >>"$CFG"
echo "storing the API key in the agent's encrypted secret store (read from stdin, never printed):"
printf '%s' "$TICKET_KEY" | "$AGENT" secret set ticket_api_key --config "$CFG"
"$AGENT" secret list --config "$CFG"

say "Starting the agent (it generates its Ed25519 identity and registers)"
PUB=$("$AGENT" identity --config "$CFG")
echo "agent public key: $PUB"
"$AGENT" run --config "$CFG" >"$RUN/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=($AGENT_PID)

ADMIN=$(cat "$RUN/cp/admin.token")
api() { curl -sf --cacert "$RUN/cp/ca.pem" -H "Authorization: Bearer $ADMIN" "$@"; }
submit() { api -d "$1" "$URL/v1/jobs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])'; }
wait_final() {
  for _ in $(seq 600); do
    s=$(api "$URL/v1/jobs/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    case "$s" in queued|running) sleep 0.1 ;; *) echo "$s"; return 0 ;; esac
  done
  echo "timeout"; return 1
}
show_log() {
  python3 - "$1" <<'PY'
import base64, json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    d = r["data"]; k = r["kind"]
    head = f'  #{r["seq"]:<3} {r["ts"]}  {k:<15}'
    if k == "job.received":
        print(head, f'runbook={d["runbook"]} params={json.dumps(d["params"])} incident={d["incident"]}')
    elif k == "authz.decision":
        extra = f'reason={d["reason"]} ({d.get("detail","")})' if d["decision"] == "deny" else f'subject={d["subject"]} scopes={d["scopes"]} roles={d["roles"]}'
        print(head, d["decision"].upper(), extra)
    elif k == "step.start":
        if "http" in d:
            print(head, f'{d["step"]}: {d["http"]["method"]} {d["http"]["url"]} (auth {d.get("auth", {}).get("type")}, egress {d["sandbox"].get("egress")})')
        else:
            print(head, f'{d["step"]}: {" ".join(d.get("argv", []))}')
        for s in d.get("secrets", []):
            print("        | secret", s.get("name"), "fingerprint", s.get("fingerprint", "")[:16] + "…")
    elif k == "net.connect":
        print(head, f'{d["step"]}: {d["host"]}:{d["port"]} {"allowed" if d["allowed"] else "REFUSED"} ({d["reason"]})')
    elif k == "output":
        text = base64.b64decode(d["b64"]).decode("utf-8", "replace").rstrip("\n")
        print(head, f'[{d["step"]} {d["stream"]}]')
        for l in text.splitlines()[:8]:
            print("        |", l)
        if len(text.splitlines()) > 8:
            print("        | …")
    elif k == "step.end":
        if "http" in d:
            print(head, f'{d["step"]}: {d["status"]} {d["http"].get("request")} -> {d["http"].get("status")} outputs={json.dumps(d.get("outputs", {}))}')
        else:
            print(head, f'{d["step"]}: {d["status"]} exit={d.get("exit_code")} {d.get("duration_ms")} ms')
    elif k == "job.end":
        print(head, f'status={d["status"]} records={d["records"]}')
    else:
        print(head, json.dumps(d))
PY
}

say "Submitting incident IR-1234: run the host-diagnostics runbook with Alice's API key"
JOB=$(submit "{\"runbook\":\"host-diagnostics\",\"params\":{\"detail\":\"basic\"},\"incident\":\"IR-1234\",\"authorization\":{\"type\":\"api_key\",\"key\":\"$KEY\"}}")
echo "job: $JOB"
STATUS=$(wait_final "$JOB")
echo "status: $STATUS"
api "$URL/v1/jobs/$JOB/records" >"$RUN/$JOB.jsonl"

say "The job's signed, hash-chained audit log (exported from the control plane)"
show_log "$RUN/$JOB.jsonl"

say "Verifying the export offline with delegate-audit, pinned to the agent's public key"
"$AUDIT" verify --public-key "$PUB" "$RUN/$JOB.jsonl"

say "The same runbook authorised by an OAuth 2.0 access token (RFC 9068, EdDSA) from the dev issuer"
SECRET=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["clients"][0]["client_secret"])' "$RUN/cp/oauth-clients.json")
TOKEN=$(curl -sf --cacert "$RUN/cp/ca.pem" -u "incident-bot:$SECRET" -d grant_type=client_credentials "$URL/oauth/token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
echo "token: ${TOKEN:0:24}… (client incident-bot, scope runbooks:execute, role sre-oncall)"
OJOB=$(submit "{\"runbook\":\"host-diagnostics\",\"incident\":\"IR-1234\",\"authorization\":{\"type\":\"oauth\",\"token\":\"$TOKEN\"}}")
OSTATUS=$(wait_final "$OJOB")
echo "job: $OJOB status: $OSTATUS"
api "$URL/v1/jobs/$OJOB/records" >"$RUN/$OJOB.jsonl"
show_log "$RUN/$OJOB.jsonl" | sed -n '1,2p'
"$AUDIT" verify --public-key "$PUB" "$RUN/$OJOB.jsonl"
echo "replaying the same token:"
RJOB=$(submit "{\"runbook\":\"host-diagnostics\",\"authorization\":{\"type\":\"oauth\",\"token\":\"$TOKEN\"}}")
RSTATUS=$(wait_final "$RJOB")
api "$URL/v1/jobs/$RJOB/records" >"$RUN/$RJOB.jsonl"
show_log "$RUN/$RJOB.jsonl" | sed -n '2p'

say "A connector runbook: open a ticket (http step, API key from the secret store), note on it by id"
TJOB=$(submit "{\"runbook\":\"incident-ticket\",\"params\":{\"title\":\"API latency above SLO\",\"severity\":\"sev2\"},\"incident\":\"IR-1234\",\"authorization\":{\"type\":\"api_key\",\"key\":\"$KEY\"}}")
TSTATUS=$(wait_final "$TJOB")
echo "job: $TJOB status: $TSTATUS"
api "$URL/v1/jobs/$TJOB/records" >"$RUN/$TJOB.jsonl"
show_log "$RUN/$TJOB.jsonl"
"$AUDIT" verify --public-key "$PUB" "$RUN/$TJOB.jsonl"
echo "what the stand-in received (the key is checked there, not printed):"
python3 - "$RUN/tickets-journal.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["path"] == "/": continue  # the demo's readiness probe
    print(f'  {r["method"]} {r["path"]}  api key ok: {r["api_key_ok"]}  body: {json.dumps(r["body"])}')
PY
echo "the key, its base64 and its hex in the signed records and the agent's log:"
LEAKS=0
for form in "$TICKET_KEY" "$(printf '%s' "$TICKET_KEY" | base64)" "$(printf '%s' "$TICKET_KEY" | od -An -tx1 | tr -d ' \n')"; do
  python3 - "$RUN/$TJOB.jsonl" "$form" <<'PY' || LEAKS=1
import base64, json, sys
needle = sys.argv[2]
for l in open(sys.argv[1]):
    r = json.loads(l)
    text = l + (base64.b64decode(r["data"]["b64"]).decode("utf-8", "replace") if r["kind"] == "output" else "")
    if needle in text: sys.exit(1)
PY
  grep -qF -- "$form" "$RUN/agent.log" && LEAKS=1
done
[ "$LEAKS" = 0 ] && echo "  none: every form is masked as *** before the records are signed" || echo "  LEAKED"

say "A job with a wrong API key is denied by the agent itself, and audited"
BAD=$(submit "{\"runbook\":\"host-diagnostics\",\"incident\":\"IR-1234\",\"authorization\":{\"type\":\"api_key\",\"key\":\"dlg.sre-oncall-alice.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}}")
BAD_STATUS=$(wait_final "$BAD")
echo "job: $BAD status: $BAD_STATUS"
api "$URL/v1/jobs/$BAD/records" >"$RUN/$BAD.jsonl"
show_log "$RUN/$BAD.jsonl"
"$AUDIT" verify --public-key "$PUB" "$RUN/$BAD.jsonl"

say "Tampering with the export (changing the runbook name) is detected"
sed 's/"runbook":"host-diagnostics"/"runbook":"host-diagnostic5"/' "$RUN/$JOB.jsonl" >"$RUN/tampered.jsonl"
if "$AUDIT" verify --public-key "$PUB" "$RUN/tampered.jsonl"; then echo "tampering NOT detected"; exit 1; fi

say "Stopping the agent (SIGTERM: finish, flush records, exit 0) and the control plane"
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
echo "agent exited with status $?"
tail -n 3 "$RUN/agent.log"

say "The whole export: the agent stream (agent.start, checkpoints, agent.stop) and every job it lists"
AGENT_ID=$(api "$URL/v1/agents" | python3 -c 'import json,sys; print(json.load(sys.stdin)["agents"][0]["id"])')
api "$URL/v1/agents/$AGENT_ID/records" >"$RUN/agent-stream.jsonl"
python3 - "$RUN/agent-stream.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line); d = r["data"]
    if r["kind"] == "checkpoint":
        print(f'  #{r["seq"]:<3} checkpoint      ' + ", ".join(f'{j["job"]} ({j["records"]} records, {j["status"]})' for j in d["jobs"]))
    else:
        print(f'  #{r["seq"]:<3} {r["kind"]:<15} boot {d["boot_id"][:8]}…')
PY
EXPORT="$RUN/export.jsonl"
cat "$RUN/agent-stream.jsonl" >"$EXPORT"
for j in $(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r=json.loads(l)
    if r["kind"]=="checkpoint":
        for j in r["data"]["jobs"]: print(j["job"])' "$RUN/agent-stream.jsonl"); do
  api "$URL/v1/jobs/$j/records" >>"$EXPORT"
done
"$AUDIT" verify --public-key "$PUB" "$EXPORT"
say "Deleting a whole job from that export is caught by the agent stream's checkpoint"
python3 - "$EXPORT" "$JOB" >"$RUN/deleted.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if json.loads(l)["job"] != sys.argv[2]: sys.stdout.write(l)
PY
if "$AUDIT" verify --public-key "$PUB" "$RUN/deleted.jsonl"; then echo "deletion NOT detected"; exit 1; fi

[ "$STATUS" = "succeeded" ] && [ "$OSTATUS" = "succeeded" ] && [ "$TSTATUS" = "succeeded" ] && [ "$LEAKS" = 0 ] && [ "$RSTATUS" = "denied" ] && [ "$BAD_STATUS" = "denied" ] ||
  { echo "demo FAILED"; exit 1; }
say "Demo complete"
