#!/bin/sh
# Builds qga-warden's .deb and .rpm: release binaries (the frontend linked
# statically), the man pages, the SELinux module when it can be built,
# then `cargo deb` and `cargo generate-rpm`. Installs nothing; needs
# cargo-deb and cargo-generate-rpm (see README, "Packages").
#
#   packaging/build.sh           # -> target/packages/*.deb, *.rpm
#
# Everything the packages hold is first staged under target/packaging/root
# (the maintainer scripts under target/packaging/scripts); the asset lists
# in broker/Cargo.toml name those files.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PKG=packaging
OUT=target/packaging
STAGE=$OUT/root
DEST=target/packages
LIBEXECDIR=/usr/libexec/qga-warden

say() { printf 'build.sh: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 1
}

for tool in deb generate-rpm; do
	cargo "$tool" --version >/dev/null 2>&1 ||
		die "cargo $tool is missing: cargo install --locked cargo-deb@3.8.0 cargo-generate-rpm@0.21.1"
done

# 1. Binaries, in a target directory of their own: the broker is built
# with the installed frontend's directory compiled in, which a development
# build must not get.
export CARGO_TARGET_DIR="$ROOT/$OUT/cargo"
HOST=$(rustc -vV | sed -n 's/^host: //p')
say "building the broker (frontend in $LIBEXECDIR)"
QGA_WARDEN_LIBEXECDIR=$LIBEXECDIR cargo build --release --locked -p qga-warden
say "building the frontend, statically linked ($HOST)"
# --target: the flag then applies to the frontend, not to build scripts.
RUSTFLAGS="-C target-feature=+crt-static" \
	cargo build --release --locked -p qga-warden-frontend --target "$HOST"
BROKER=$CARGO_TARGET_DIR/release/qga-warden
FRONTEND=$CARGO_TARGET_DIR/$HOST/release/qga-warden-frontend
if readelf -l "$FRONTEND" | grep -q 'program interpreter'; then
	die "$FRONTEND is not statically linked"
fi
# broker/Cargo.toml declares libc6 (>= 2.34) and libgcc-s1: the broker must
# need no other library, nor a newer symbol version.
NEEDED=$(readelf -d "$BROKER" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
[ "$NEEDED" = "libc.so.6 libgcc_s.so.1 " ] ||
	die "the broker needs $NEEDED; update depends in broker/Cargo.toml"
NEWEST=$(objdump -T "$BROKER" | sed -n 's/.*GLIBC_\([0-9][0-9.]*\).*/\1/p' | sort -t. -k1,1n -k2,2n | tail -n 1)
case "$NEWEST" in
2.[0-9] | 2.[0-2][0-9] | 2.3[0-4] | "") ;;
*) die "the broker needs GLIBC_$NEWEST; raise the libc6 dependency in broker/Cargo.toml" ;;
esac

# 2. The SELinux module (selinux/, built with the distribution's policy
# development files). Not there, or no devel files: packages without it.
SELINUX=no
if [ -d selinux ] && [ -f /usr/share/selinux/devel/Makefile ]; then
	say "building the SELinux module"
	make -C selinux
	[ -f selinux/qga_warden.pp ] || die "make -C selinux made no selinux/qga_warden.pp"
	SELINUX=yes
elif [ -d selinux ]; then
	say "no /usr/share/selinux/devel/Makefile (selinux-policy-dev): packaging without the SELinux module"
else
	say "no selinux/ directory: packaging without the SELinux module"
fi

# 3. Stage every file the packages hold.
rm -rf "$STAGE" "$OUT/scripts"
put() { # MODE SOURCE DEST
	install -D -m "$1" "$2" "$STAGE$3"
}
put 755 "$BROKER" /usr/sbin/qga-warden
put 755 "$FRONTEND" $LIBEXECDIR/qga-warden-frontend
# The toolchain's version notes: of no use at run time.
objcopy --remove-section=.comment "$STAGE/usr/sbin/qga-warden"
objcopy --remove-section=.comment "$STAGE$LIBEXECDIR/qga-warden-frontend"
put 644 $PKG/policy.toml /etc/qga-warden/policy.toml
put 755 $PKG/fsfreeze-hook /etc/qga-warden/fsfreeze-hook
put 644 $PKG/logrotate /etc/logrotate.d/qga-warden
put 644 $PKG/systemd/qga-warden.service /usr/lib/systemd/system/qga-warden.service
put 644 $PKG/udev-99-qga-warden.rules /usr/lib/udev/rules.d/99-qga-warden.rules
put 644 $PKG/sysusers.conf /usr/lib/sysusers.d/qga-warden.conf
for page in qga-warden.8 qga-warden-policy.toml.5; do
	section=${page##*.}
	mkdir -p "$STAGE/usr/share/man/man$section"
	gzip -9n <"$PKG/man/$page" >"$STAGE/usr/share/man/man$section/$page.gz"
done
put 644 README.md /usr/share/doc/qga-warden/README.md
put 644 SECURITY.md /usr/share/doc/qga-warden/SECURITY.md
for example in examples/*.toml; do
	put 644 "$example" "/usr/share/doc/qga-warden/examples/${example##*/}"
done
put 644 $PKG/lintian-overrides /usr/share/lintian/overrides/qga-warden
if [ "$SELINUX" = yes ]; then
	put 644 selinux/qga_warden.pp /usr/share/selinux/packages/qga_warden.pp
fi

# 4. Maintainer scripts: the shared steps, with the service manager's
# front end for each format.
mkdir -p "$OUT/scripts/deb" "$OUT/scripts/rpm"
for s in postinst prerm postrm; do
	{
		printf '#!/bin/sh\nset -e\n\n'
		printf 'qgaw_service() {\n\tdeb-systemd-invoke "$1" "$QGAW_UNIT" >/dev/null\n}\n\n'
		printf '# --- common steps ---\n'
		cat $PKG/scripts/common.sh
		printf '# --- end of common steps ---\n\n'
		cat "$PKG/scripts/deb/$s"
	} >"$OUT/scripts/deb/$s"
	chmod 755 "$OUT/scripts/deb/$s"
done
for s in post preun postun; do
	{
		printf '# restart means try-restart: a stopped agent stays stopped.\n'
		printf 'qgaw_service() {\n\tcase "$1" in restart) set -- try-restart ;; esac\n'
		printf '\tsystemctl "$1" "$QGAW_UNIT" >/dev/null 2>&1\n}\n\n'
		printf '# --- common steps ---\n'
		cat $PKG/scripts/common.sh
		printf '# --- end of common steps ---\n\n'
		cat "$PKG/scripts/rpm/$s"
	} >"$OUT/scripts/rpm/$s"
done

# 5. The .deb, then the .rpm with the same files: the copyright file and
# changelog cargo-deb wrote into the .deb are staged for the .rpm too.
rm -rf "$DEST"
mkdir -p "$DEST"
set -- --no-build -p qga-warden -o "$DEST"
[ "$SELINUX" = yes ] && set -- "$@" --variant selinux
say "cargo deb $*"
# cargo-deb warns that each asset is not under target/release/ (it would
# build those): true, and meant; its other messages are shown.
if ! cargo deb "$@" 2>"$OUT/cargo-deb.log"; then
	cat "$OUT/cargo-deb.log" >&2
	die "cargo deb failed"
fi
grep -v "^warning: Only source paths starting with exactly 'target/release/'" "$OUT/cargo-deb.log" >&2 || true
DEB=$(ls "$DEST"/*.deb)
rm -rf "$OUT/deb"
mkdir -p "$OUT/deb"
dpkg-deb -x "$DEB" "$OUT/deb"
for doc in copyright changelog.Debian.gz; do
	put 644 "$OUT/deb/usr/share/doc/qga-warden/$doc" "/usr/share/doc/qga-warden/$doc"
done
set -- -p broker -o "$DEST"
if [ "$SELINUX" = yes ]; then
	# The asset list of broker/Cargo.toml, and the module.
	awk '
		/^\[package\.metadata\.generate-rpm\]/ { rpm = 1; next }
		/^\[/ { rpm = 0 }
		rpm && /^assets = \[/ { on = 1 }
		on && /^\]/ {
			print "    { source = \"target/packaging/root/usr/share/selinux/packages/qga_warden.pp\", dest = \"/usr/share/selinux/packages/qga_warden.pp\", mode = \"644\" },"
			print "]"
			exit
		}
		on { print }
	' broker/Cargo.toml >"$OUT/rpm-selinux.toml"
	set -- "$@" --metadata-overwrite="$OUT/rpm-selinux.toml"
fi
say "cargo generate-rpm $*"
cargo generate-rpm "$@"

say "SELinux module included: $SELINUX"
ls -1 "$ROOT/$DEST"/*.deb "$ROOT/$DEST"/*.rpm
