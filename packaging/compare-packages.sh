#!/bin/sh
# Checks that the .rpm holds what the .deb holds and runs the same steps:
#
#   packaging/compare-packages.sh target/packages/*.deb target/packages/*.rpm
#
# - the same files with the same modes (rpm -qlp against dpkg-deb -c; the
#   lintian overrides are Debian's own), the same configuration files;
# - maintainer scripts built from the same steps (rpm -qp --scripts
#   against the .deb's control scripts): the same shared step functions,
#   called in the same order after installing and before removing; after
#   removal the same steps, except that purging a .deb also deletes the
#   audit files in /var/log/qga-warden, which RPM, having no purge, keeps.
# Exits 1 on any difference, printing it.
set -eu

[ $# -eq 2 ] || {
	echo "usage: $0 PACKAGE.deb PACKAGE.rpm" >&2
	exit 2
}
DEB=$1
RPM=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failed=0
fail() {
	echo "compare-packages: $*" >&2
	failed=1
}
same() { # WHAT FILE-FROM-DEB FILE-FROM-RPM
	if diff -u "$2" "$3" >"$WORK/diff"; then
		echo "compare-packages: same $1 ($(wc -l <"$2") lines)"
	else
		fail "different $1 (- deb, + rpm):"
		cat "$WORK/diff" >&2
	fi
}

# Files (not directories: cargo-deb lists each file's parents, RPM lists
# none; the maintainer scripts handle the package's own directories).
dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $1, $6 }' |
	grep -v ' /usr/share/lintian/overrides/' | sort >"$WORK/deb.files"
rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$RPM" | sort >"$WORK/rpm.files"
same "files and modes" "$WORK/deb.files" "$WORK/rpm.files"

dpkg-deb -I "$DEB" conffiles | sort >"$WORK/deb.conf"
rpm -qpc "$RPM" | sort >"$WORK/rpm.conf"
same "configuration files" "$WORK/deb.conf" "$WORK/rpm.conf"

# Scripts.
dpkg-deb -e "$DEB" "$WORK/control"
for s in postin preun postun; do
	rpm -qp --qf "%{$(echo $s | tr a-z A-Z)}" "$RPM" >"$WORK/rpm.$s"
	sh -n "$WORK/rpm.$s" || fail "rpm $s scriptlet: syntax error"
done
for s in postinst prerm postrm; do
	sh -n "$WORK/control/$s" || fail "deb $s: syntax error"
done
common() { sed -n '/^# --- common steps ---$/,/^# --- end of common steps ---$/p' "$1"; }
common "$WORK/control/postinst" >"$WORK/deb.common"
[ -s "$WORK/deb.common" ] || fail "no common steps in the .deb's postinst"
for s in postinst prerm postrm; do
	common "$WORK/control/$s" | cmp -s - "$WORK/deb.common" || fail "deb $s: other common steps"
done
for s in postin preun postun; do
	common "$WORK/rpm.$s" >"$WORK/rpm.common.$s"
	same "step functions (deb postinst, rpm $s)" "$WORK/deb.common" "$WORK/rpm.common.$s"
done
# The steps each script calls (after the shared definitions), in order.
steps() {
	sed '1,/^# --- end of common steps ---$/d' "$1" |
		sed -n 's/^[[:space:]]*\(qgaw_[a-z_]*\)[[:space:]]*$/\1/p'
}
steps "$WORK/control/postinst" >"$WORK/deb.postinst.steps"
steps "$WORK/rpm.postin" >"$WORK/rpm.postin.steps"
same "steps after installing (postinst, %post)" "$WORK/deb.postinst.steps" "$WORK/rpm.postin.steps"
steps "$WORK/control/prerm" >"$WORK/deb.prerm.steps"
steps "$WORK/rpm.preun" >"$WORK/rpm.preun.steps"
same "steps before removing (prerm, %preun)" "$WORK/deb.prerm.steps" "$WORK/rpm.preun.steps"
steps "$WORK/control/postrm" | grep -vx qgaw_remove_logs | sort -u >"$WORK/deb.postrm.steps"
steps "$WORK/rpm.postun" | sort -u >"$WORK/rpm.postun.steps"
same "steps after removing (postrm remove and purge, %postun; less the .deb's purge of logs)" \
	"$WORK/deb.postrm.steps" "$WORK/rpm.postun.steps"
for f in "$WORK"/*.steps; do
	[ -s "$f" ] || fail "no steps found in ${f##*/}"
done

if [ "$failed" -ne 0 ]; then
	echo "compare-packages: the packages differ" >&2
	exit 1
fi
echo "compare-packages: the .deb and the .rpm agree"
