# Steps shared by the .deb's and the .rpm's maintainer scripts.
# packaging/build.sh puts this file into each script, after a definition of
# qgaw_service ACTION (deb-systemd-invoke on Debian, systemctl on RPM
# systems). Each step is one function; packaging/compare-packages.sh checks
# that the two packages call the same steps. Every step works without a
# running systemd (a container, a chroot, an image being built).

QGAW_UNIT=qga-warden.service
QGAW_PORT=/dev/virtio-ports/org.qemu.guest_agent.0

# The frontend's account: from our sysusers.d file through systemd-sysusers
# (which needs no running systemd), else useradd (Debian's passwd package,
# RPM systems' shadow-utils).
qgaw_account() {
	getent passwd qga-warden >/dev/null && return 0
	if command -v systemd-sysusers >/dev/null 2>&1; then
		systemd-sysusers /usr/lib/sysusers.d/qga-warden.conf && return 0
	fi
	useradd --system --user-group --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin --comment "qga-warden guest agent frontend" \
		qga-warden
}

qgaw_daemon_reload() {
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
	fi
}

# Only where udevd runs (not in a container or chroot).
qgaw_udev_reload() {
	if [ -S /run/udev/control ] && command -v udevadm >/dev/null 2>&1; then
		udevadm control --reload-rules || true
	fi
}

# An upgrade restarts a running agent (its ExecStopPost thaws anything
# frozen); a stopped one stays stopped.
qgaw_restart_if_running() {
	if [ -d /run/systemd/system ]; then
		qgaw_service restart || true
	fi
}

# A first install does not take the port from a running qemu-ga: udev
# starts qga-warden at the next boot (or when the port next appears).
qgaw_first_start_note() {
	if [ -d /run/systemd/system ] && [ -e "$QGAW_PORT" ]; then
		echo "qga-warden: it starts with the next boot, or now with: systemctl start qga-warden"
		echo "qga-warden: (starting it stops qemu-guest-agent, which serves the same port)"
	fi
}

qgaw_stop() {
	if [ -d /run/systemd/system ]; then
		qgaw_service stop || true
	fi
}

# The hook directory ships empty, which neither package format can list
# here (see broker/Cargo.toml).
qgaw_hook_dir() {
	mkdir -p /etc/qga-warden/fsfreeze-hook.d
}

# Runtime state (the freeze state file, handle numbers).
qgaw_remove_state() {
	rm -rf /run/qga-warden
}

# The package's directories, where they are left empty: a hook script the
# admin added, or a changed policy kept by the package manager, keeps its
# directory.
qgaw_remove_dirs() {
	for d in /etc/qga-warden/fsfreeze-hook.d /etc/qga-warden /usr/libexec/qga-warden \
		/usr/share/doc/qga-warden/examples /usr/share/doc/qga-warden; do
		if [ -d "$d" ]; then
			rmdir --ignore-fail-on-non-empty "$d"
		fi
	done
}

# The audit files (purge only: RPM, which has no purge, keeps them).
qgaw_remove_logs() {
	rm -rf /var/log/qga-warden
}
