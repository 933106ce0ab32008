#!/bin/sh
# Builds both packages and checks them on this machine (Debian 12, root);
# .ci/run runs it. Exits 1 at the first failure.
#
#   packaging/check.sh [--no-build]
#
# 1. packaging/build.sh (unless --no-build);
# 2. lintian on the .deb: no error, no warning (overrides carry reasons);
#    the man pages lint clean (mandoc -Tlint, groff warnings);
# 3. packaging/compare-packages.sh: the .rpm's files and steps are the .deb's;
# 4. the .deb installed with dpkg -i: files in place, the account made,
#    qga-warden --version, policy check of the installed policy, man -l of
#    both pages, systemd-analyze verify and security of the unit, the
#    hook, and the installed agent answering on a unix socket (never on
#    this machine's devices: the service itself is not started);
# 5. an upgrade keeps an edited policy; removal keeps it; purge removes
#    everything: the list of files on the machine is what it was before.
# The qga-warden account outlives the package, as Debian and sysusers.d
# keep system accounts; this script deletes it again if it made it.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
START=$(date +%s)
WORK=$(mktemp -d)
step() { printf '\ncheck.sh: == %s\n' "$*"; }
ok() { printf 'check.sh: ok: %s\n' "$*"; }
die() {
	printf 'check.sh: FAILED: %s\n' "$*" >&2
	exit 1
}
ACCOUNT_BEFORE=no
getent passwd qga-warden >/dev/null && ACCOUNT_BEFORE=yes
AGENT_PID=
cleanup() {
	rc=$?
	set +e
	[ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null
	if dpkg-query -W -f '${Status}' qga-warden 2>/dev/null | grep -q installed; then
		dpkg --purge qga-warden >/dev/null 2>&1
	fi
	# The account this run made (another program on the machine may have
	# started using it meanwhile: then it is left, and said so).
	if [ "$ACCOUNT_BEFORE" = no ]; then
		if getent passwd qga-warden >/dev/null && ! userdel qga-warden; then
			echo "check.sh: warning: could not delete the qga-warden account this run made" >&2
		fi
		getent group qga-warden >/dev/null && groupdel qga-warden
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] || die "run as root (it installs the package)"
for tool in dpkg-deb rpm lintian systemd-analyze man mandoc; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install lintian rpm systemd man-db mandoc)"
done

if [ "${1:-}" != --no-build ]; then
	step "build"
	packaging/build.sh
fi
DEB=$(ls target/packages/qga-warden_*_amd64.deb)
RPM=$(ls target/packages/qga-warden-*.x86_64.rpm)

step "lintian $DEB"
# Warnings fail too; each one left is fixed or overridden with a reason in
# packaging/lintian-overrides.
lintian --fail-on error,warning --display-info "$DEB" || die "lintian"
ok "lintian: no error, no warning"

step "man pages"
for page in packaging/man/qga-warden.8 packaging/man/qga-warden-policy.toml.5; do
	out=$(mandoc -Tlint "$page" 2>&1) || true
	[ -z "$out" ] || die "mandoc -Tlint $page: $out"
	out=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$page" 2>&1 >/dev/null)
	[ -z "$out" ] || die "groff warnings in $page: $out"
done
ok "mandoc -Tlint and groff: no warnings"

step "the .rpm against the .deb"
packaging/compare-packages.sh "$DEB" "$RPM" || die "the packages differ"

step "install"
if dpkg-query -W -f '${Status}' qga-warden 2>/dev/null | grep -q installed; then
	echo "check.sh: qga-warden is installed; purging it first"
	dpkg --purge qga-warden
fi
# Every path on the machine's own filesystems, less what others change
# while this runs (temporary files, caches, logs, build trees, the
# package database, whose qga-warden entries are checked on their own).
snapshot() {
	{
		find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /tmp \
			-o -path /var/tmp -o -path /root -o -path /home -o -path /work \
			-o -path /var/cache -o -path /var/log -o -path /var/lib/dpkg \
			-o -path /var/lib/apt -o -path /var/lib/man-db \) -prune -o -print
		find /run /var/log /var/lib/dpkg/info -name '*qga-warden*'
	} 2>/dev/null | LC_ALL=C sort -u
}
snapshot >"$WORK/before"
dpkg -i "$DEB" || die "dpkg -i"
dpkg-deb -c "$DEB" | awk '{ sub(/^\./, "", $6); print $1, $6 }' >"$WORK/contents"
while read -r perms path; do
	case "$perms" in
	d*) [ -d "$path" ] || die "missing directory $path" ;;
	*)
		[ -f "$path" ] || die "missing file $path"
		[ "$(stat -c %A "$path")" = "$perms" ] || die "$path: $(stat -c %A "$path"), not $perms"
		;;
	esac
done <"$WORK/contents"
[ -d /etc/qga-warden/fsfreeze-hook.d ] || die "no /etc/qga-warden/fsfreeze-hook.d"
ok "$(grep -vc '^d' "$WORK/contents") files in place, with their modes"

entry=$(getent passwd qga-warden) || die "no qga-warden account"
uid=$(echo "$entry" | cut -d: -f3)
shell=$(echo "$entry" | cut -d: -f7)
[ "$uid" -gt 0 ] && [ "$uid" -lt 1000 ] || die "qga-warden is not a system account: $entry"
case "$shell" in */nologin) ;; *) die "qga-warden has a login shell: $entry" ;; esac
ok "account: $entry"

version=$(qga-warden --version) || die "qga-warden --version"
[ "$version" = "qga-warden $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)" ] || die "version: $version"
ok "$version"
qga-warden policy check /etc/qga-warden/policy.toml || die "policy check"
qga-warden --help | grep -q 'default: /usr/libexec/qga-warden/qga-warden-frontend' ||
	die "the installed broker does not default to /usr/libexec/qga-warden/qga-warden-frontend"
qga-warden --help | grep -q '/etc/qga-warden/fsfreeze-hook if it exists' || die "--help: hook default"
ok "policy check, frontend and hook defaults"

for page in 8/qga-warden.8 5/qga-warden-policy.toml.5; do
	man -l "/usr/share/man/man${page%%/*}/${page#*/}.gz" | grep -q 'qga-warden' || die "man -l $page"
done
[ "$(man -w qga-warden)" = /usr/share/man/man8/qga-warden.8.gz ] || die "man -w qga-warden"
ok "man -l of both pages; man finds qga-warden(8)"

step "systemd"
systemd-analyze verify /usr/lib/systemd/system/qga-warden.service || die "systemd-analyze verify"
ok "systemd-analyze verify"
# Exposure, as systemd-analyze rates it (0 best, 10 worst): ours and,
# for comparison, qemu-guest-agent's when installed. The threshold (×10)
# catches a unit that loses its sandboxing.
systemd-analyze security --offline=true --threshold=45 /usr/lib/systemd/system/qga-warden.service |
	tail -n 1 || die "qga-warden.service is exposed beyond 4.5"
for unit in /lib/systemd/system/qemu-guest-agent.service /usr/lib/systemd/system/qemu-guest-agent.service; do
	if [ -f "$unit" ]; then
		systemd-analyze security --offline=true "$unit" | tail -n 1
		break
	fi
done

step "the fsfreeze hook"
cat >/etc/qga-warden/fsfreeze-hook.d/check-sh-probe <<HOOK
#!/bin/sh
echo "probe \$1" >>$WORK/hook.log
HOOK
chmod 755 /etc/qga-warden/fsfreeze-hook.d/check-sh-probe
/etc/qga-warden/fsfreeze-hook freeze >/dev/null && /etc/qga-warden/fsfreeze-hook thaw >/dev/null ||
	die "the hook failed"
[ "$(cat "$WORK/hook.log")" = "probe freeze
probe thaw" ] || die "the hook did not run its directory: $(cat "$WORK/hook.log")"
rm /etc/qga-warden/fsfreeze-hook.d/check-sh-probe
ok "the hook runs /etc/qga-warden/fsfreeze-hook.d/*"

step "the installed agent, on a unix socket"
if command -v socat >/dev/null; then
	qga-warden -m unix-listen -p "$WORK/qga.sock" -t "$WORK" 2>"$WORK/agent.log" &
	AGENT_PID=$!
	i=0
	while [ ! -S "$WORK/qga.sock" ] && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	# The agent drops the replies of a host that has gone: keep the
	# connection open until the reply is in.
	reply=$( (echo '{"execute":"guest-ping"}'; sleep 1) | socat -t 5 - "UNIX-CONNECT:$WORK/qga.sock") || true
	kill "$AGENT_PID"
	wait "$AGENT_PID" || true
	AGENT_PID=
	[ "$reply" = '{"return": {}}' ] || die "guest-ping: '$reply'; $(cat "$WORK/agent.log")"
	grep -q "\"event\":\"frontend\",\"pid\":[0-9]*,\"uid\":$uid," "$WORK/agent.log" ||
		die "the frontend did not run as qga-warden ($uid): $(cat "$WORK/agent.log")"
	grep -q '"event":"policy","path":"/etc/qga-warden/policy.toml"' "$WORK/agent.log" ||
		die "the agent did not read /etc/qga-warden/policy.toml"
	ok "guest-ping answered; frontend from /usr/libexec as uid $uid; policy from /etc/qga-warden"
else
	echo "check.sh: socat missing: not starting the installed agent"
fi

step "upgrade keeps an edited policy"
echo "# edited by check.sh" >>/etc/qga-warden/policy.toml
version=$(dpkg-deb -f "$DEB" Version)
dpkg-deb -R "$DEB" "$WORK/next"
sed -i "s/^Version: .*/Version: ${version%-*}-99/" "$WORK/next/DEBIAN/control"
dpkg-deb --root-owner-group -b "$WORK/next" "$WORK/next.deb" >/dev/null
dpkg -i --force-confold "$WORK/next.deb" || die "upgrade"
[ "$(dpkg-query -W -f '${Version}' qga-warden)" = "${version%-*}-99" ] || die "not upgraded"
grep -q '^# edited by check.sh$' /etc/qga-warden/policy.toml || die "the upgrade overwrote the edited policy"
ok "upgraded to ${version%-*}-99; the edited policy was kept"

step "remove, then purge"
dpkg -r qga-warden || die "dpkg -r"
[ ! -e /usr/sbin/qga-warden ] || die "/usr/sbin/qga-warden left after removal"
grep -q '^# edited by check.sh$' /etc/qga-warden/policy.toml || die "removal lost the edited policy"
ok "removed; the edited policy is kept until purge"
dpkg --purge qga-warden || die "dpkg --purge"
snapshot >"$WORK/after"
# Paths another package (installed meanwhile by someone else) owns are not ours.
LC_ALL=C comm -13 "$WORK/before" "$WORK/after" >"$WORK/new"
LC_ALL=C comm -23 "$WORK/before" "$WORK/after" >"$WORK/gone"
: >"$WORK/stray"
while read -r path; do
	owner=$(dpkg -S "$path" 2>/dev/null | cut -d: -f1 | head -n 1) || true
	if [ -n "$owner" ] && [ "$owner" != qga-warden ]; then
		echo "check.sh: new since the install, but $owner's: $path"
	else
		echo "$path" >>"$WORK/stray"
	fi
done <"$WORK/new"
[ ! -s "$WORK/stray" ] || die "left behind by purge: $(cat "$WORK/stray")"
[ ! -s "$WORK/gone" ] || die "gone after install and purge: $(cat "$WORK/gone")"
getent passwd qga-warden >/dev/null || die "the account was removed (it is kept, as system accounts are)"
ok "purged: the files on this machine are those before the install ($(wc -l <"$WORK/before") paths compared)"

echo
echo "check.sh: all checks passed in $(($(date +%s) - START)) s"
