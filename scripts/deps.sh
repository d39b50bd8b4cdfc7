#!/usr/bin/env bash
# Installs the Debian packages Outpost needs when they are missing. The local
# node uses util-linux's mount namespaces through the kernel directly, Python's
# http.server only in examples and tests.
set -euo pipefail
need=()
command -v python3 >/dev/null || need+=(python3)
command -v kubectl >/dev/null || need+=(kubectl)
command -v curl >/dev/null || need+=(curl)
# busybox: the shell and applets of busybox images, and httpd for the httpd image
# (internal/container's image shims).
command -v busybox >/dev/null || need+=(busybox)
# nc with the flags upstream's tests pass it (-v -t -w), for the images built on busybox.
command -v nc >/dev/null || need+=(netcat-openbsd)
# The examples' training jobs: scikit-learn, PyTorch (CPU), mpi4py and Open MPI's
# mpirun, and `python` as well as `python3` (job commands call either; the local
# node runs them with the host's Python).
# Asked of dpkg, not of PATH: a Python of pyenv or a virtualenv earlier in PATH
# is not what pods get.
for pkg in python3-sklearn python-is-python3 python3-torch python3-mpi4py openmpi-bin; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need+=("$pkg")
done
# make bench-router: wrk drives the same load directly, through Debian's nginx
# (run unprivileged from a config of its own; the package's service is not used)
# and through the router.
command -v wrk >/dev/null || need+=(wrk)
dpkg-query -W -f='${Status}' nginx 2>/dev/null | grep -q 'ok installed' || need+=(nginx)
# e2e/sdk installs the Python SDK offline with pip (setuptools and wheel come with it).
dpkg-query -W -f='${Status}' python3-pip 2>/dev/null | grep -q 'ok installed' || need+=(python3-pip)
# The Studio's browser tests (e2e/studio) drive Debian's headless Chromium.
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
