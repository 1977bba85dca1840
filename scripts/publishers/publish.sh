#!/usr/bin/env bash
# Publish one job to extworker with redis-cli alone, wait for it, print the outcome.
#
#   scripts/publishers/publish.sh JOB_JSON [WAIT_SECONDS]
#
# JOB_JSON is the job exactly as the README's contract describes it, with a jobId
# (the publisher chooses it, and finds the job — and the file it created — by it):
#
#   publish.sh '{"jobId":"up-1","upload":{"url":"https://example.com/a.jpg","fileName":"a.jpg"},
#                "extensions":[{"name":"remove-bg"}]}'
#
# Prints the job document, then the file record, as JSON lines; exits 0 when every
# extension succeeded, 1 when the job was rejected or an extension failed, 2 on a
# timeout. Environment: REDIS_URL (default redis://127.0.0.1:6379/0),
# EXTWORKER_NAMESPACE (default extworker).
set -euo pipefail
job=${1:?usage: publish.sh JOB_JSON [WAIT_SECONDS]}
wait_s=${2:-120}
url=${REDIS_URL:-redis://127.0.0.1:6379/0}
ns=${EXTWORKER_NAMESPACE:-extworker}
rc() { redis-cli -u "$url" --no-auth-warning "$@"; }

job_id=$(printf '%s' "$job" | sed -n 's/.*"jobId" *: *"\([^"]*\)".*/\1/p')
[ -n "$job_id" ] || { echo "publish.sh: the job needs a jobId" >&2; exit 64; }

rc XADD "$ns:intake" '*' job "$job" >/dev/null

deadline=$(( $(date +%s) + wait_s ))
while :; do
  doc=$(rc GET "$ns:job:$job_id")
  case "$doc" in
    *'"state":"rejected"'*) break ;;
    *'"state":"dispatched"'*) case "$doc" in *'"status":"pending"'*) ;; *) break ;; esac ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "publish.sh: job $job_id not final after ${wait_s}s" >&2
    printf '%s\n' "${doc:-null}"
    exit 2
  fi
  sleep 0.2
done
printf '%s\n' "$doc"
file_id=$(printf '%s' "$doc" | sed -n 's/.*"fileId":"\([^"]*\)".*/\1/p')
if [ -n "$file_id" ]; then rc GET "$ns:file:$file_id"; else echo null; fi
case "$doc" in *'"state":"rejected"'*|*'"status":"failed"'*) exit 1 ;; esac
