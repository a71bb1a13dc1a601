#!/usr/bin/env bash
# Install a single-node SLURM (slurmctld + slurmd + client tools) and munge for the
# end-to-end HPC test (tests/test_hpc_slurm.py). Idempotent: does nothing when the
# binaries are already there. Needs root (CI) and apt; the daemons are NOT started here —
# the test writes its own slurm.conf / munge key and starts and stops them itself.
set -euo pipefail

have_all() {
    command -v sbatch >/dev/null 2>&1 && command -v slurmctld >/dev/null 2>&1 \
        && command -v slurmd >/dev/null 2>&1 && command -v munged >/dev/null 2>&1
}

if have_all; then
    echo "install_slurm: slurm-wlm and munge already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install_slurm: not root; skipping (the SLURM test will skip)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_slurm: no apt-get; skipping (the SLURM test will skip)" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps out mailutils / the documentation stack
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
# the packages' postinst may start services on systemd hosts; tests run their own
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl stop slurmctld slurmd munge >/dev/null 2>&1 || true
fi
if have_all; then
    echo "install_slurm: installed slurm-wlm $(dpkg-query -W -f='${Version}' slurm-wlm 2>/dev/null)"
else
    echo "install_slurm: installation incomplete; the SLURM test will skip" >&2
fi
