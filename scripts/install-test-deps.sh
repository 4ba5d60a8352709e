#!/usr/bin/env bash
# Installs the Debian packages the Python SDK, the RabbitMQ example, the etcd control plane and their
# tests need, only when missing (apt-get update runs only then too), so a second run costs a dpkg
# query and nothing else. etcd-server and etcd-client give /usr/bin/etcd and /usr/bin/etcdctl (3.4);
# the tests start private etcd instances of their own (test/helpers/etcd.ts), never the package's.
# iproute2 gives `ip` and `bridge`, with which the partition test makes its network namespaces.
# chromium is the browser the dashboard test drives through playwright-core (test/dashboard.test.ts,
# /usr/bin/chromium): Debian's package, so no test downloads a browser of its own.
# There is no PyPI here: Debian's python3 (/usr/bin/python3) and its python3-* packages are the
# whole Python toolchain.
set -euo pipefail

packages=(python3-grpcio python3-protobuf python3-pika python3-pytest protobuf-compiler rabbitmq-server
  etcd-server etcd-client iproute2 chromium)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "install-test-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
# The postinst scripts of rabbitmq-server and etcd-server must not start their services: the tests
# start their own on 127.0.0.1 (a packaged etcd would also take ports 2379/2380).
# policy-rc.d exit 101 tells invoke-rc.d to start no service while installing.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  created_policy=1
fi
status=0
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
if [ "$created_policy" -eq 1 ]; then $sudo rm -f "$policy"; fi
exit $status
