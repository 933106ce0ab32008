#!/usr/bin/env bash
# Checks that the SELinux module says what SECURITY.md claims.
#
# Links selinux/qga_warden.pp (make -C selinux) with Debian's reference
# policy (selinux-policy-default: base.pp and every module it ships) into a
# binary policy, then asks sesearch/seinfo (setools) about it. Every rule
# counts, whatever the booleans: sesearch lists conditional rules with their
# condition, and a rule written for an attribute (domain, file_type, ...)
# counts for each of its types. Prints PASS or FAIL per claim; exits 1 if
# any fails.
#
#   selinux/check.sh [MODULE.pp]
#
# Needs: setools (sesearch, seinfo), semodule-utils (semodule_link,
# semodule_expand, semodule_unpackage), selinux-utils (matchpathcon),
# policycoreutils (setfiles), selinux-policy-default (the reference policy),
# bzip2 (bzcat).
# Nothing is installed or loaded: the work is done in selinux/tmp/check.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
module=$(realpath "${1:-$here/qga_warden.pp}")
refpolicy=${QGA_WARDEN_REFPOLICY:-/usr/share/selinux/default}
work=$here/tmp/check

for tool in sesearch seinfo semodule_link semodule_expand semodule_unpackage matchpathcon setfiles bzcat; do
    command -v "$tool" >/dev/null || { echo "check.sh: $tool not found (see the comment at the top)" >&2; exit 2; }
done
[ -f "$module" ] || { echo "check.sh: $module not found: run make -C selinux first" >&2; exit 2; }
[ -f "$refpolicy/base.pp.bz2" ] || [ -f "$refpolicy/base.pp" ] ||
    { echo "check.sh: no reference policy in $refpolicy (apt-get install selinux-policy-default)" >&2; exit 2; }

# --- The policy under test --------------------------------------------------

rm -rf "$work"
mkdir -p "$work/ref"
start=$SECONDS
for f in "$refpolicy"/*.pp.bz2 "$refpolicy"/*.pp; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .bz2)
    [ "$name" = qga_warden.pp ] && continue
    case $f in *.bz2) bzcat "$f" >"$work/ref/$name" ;; *) cp "$f" "$work/ref/$name" ;; esac
done
others=()
for f in "$work"/ref/*.pp; do
    [ "$(basename "$f")" = base.pp ] || others+=("$f")
done
if ! semodule_link -o "$work/linked.lpp" "$work/ref/base.pp" "${others[@]}" "$module" >"$work/link.log" 2>&1; then
    grep -v 'loading package from file' "$work/link.log" >&2
    echo "check.sh: semodule_link failed" >&2
    exit 1
fi
semodule_expand "$work/linked.lpp" "$work/policy.bin"
policy=$work/policy.bin
echo "policy: $(basename "$module") linked with base.pp and ${#others[@]} modules of $refpolicy ($((SECONDS - start)) s)"

# --- How claims are checked ----------------------------------------------------

passed=0
failed=0

# claim DESCRIPTION COMMAND...: the command prints what contradicts the
# claim and fails, or succeeds.
claim() {
    local what=$1 out status=0
    shift
    out=$("$@" 2>&1) || status=$?
    if [ "$status" -eq 0 ]; then
        echo "PASS  $what"
        passed=$((passed + 1))
    else
        echo "FAIL  $what"
        [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/        /'
        failed=$((failed + 1))
    fi
}

# search ARGS...: sesearch on the policy under test; an error (an unknown
# type, class or permission) is a failure, never an empty answer.
search() {
    sesearch "$policy" "$@" 2>&1 || { echo "sesearch $* failed"; return 2; }
}

# none ARGS...: sesearch finds no rule.
none() {
    local out
    out=$(search "$@") || { echo "$out"; return 2; }
    [ -z "$out" ] || { printf 'found: %s\n' "$out"; return 1; }
}

# has LINE ARGS...: sesearch finds exactly this rule among others.
has() {
    local line=$1 out
    shift
    out=$(search "$@") || { echo "$out"; return 2; }
    grep -qxF -- "$line" <<<"$out" || { printf 'missing: %s\nfound:\n%s\n' "$line" "$out"; return 1; }
}

# only REGEX ARGS...: every rule sesearch finds matches REGEX (extended),
# and there is at least one.
only() {
    local regex=$1 out bad
    shift
    out=$(search "$@") || { echo "$out"; return 2; }
    [ -n "$out" ] || { echo "found no rule at all"; return 1; }
    bad=$(grep -vE -- "$regex" <<<"$out") || true
    [ -z "$bad" ] || { printf 'found: %s\n' "$bad"; return 1; }
}

# bool_default NAME VALUE: the Boolean exists with this default.
bool_default() {
    [ -s "$work/booleans" ] || seinfo "$policy" -b -x >"$work/booleans" || return 2
    grep -qE "^[[:space:]]*bool $1 $2;\$" "$work/booleans" ||
        { grep -E "^[[:space:]]*bool $1 " "$work/booleans" || echo "no Boolean $1"; return 1; }
}

# active_with OFF LINE: succeeds when the (conditional) rule LINE can be in
# force while Boolean OFF is false, whatever the other Booleans; an
# unconditional rule always is.
active_with() {
    local off=$1 line=$2
    local re='\[ (.*) \]:(True|False)$'
    [[ $line =~ $re ]] || return 0
    local expr=${BASH_REMATCH[1]} branch=${BASH_REMATCH[2]}
    local names=() name
    for name in $(grep -oE '[A-Za-z_][A-Za-z0-9_]*' <<<"$expr" | sort -u); do
        [ "$name" = "$off" ] || names+=("$name")
    done
    local n=${#names[@]} combo i value e
    for ((combo = 0; combo < (1 << n); combo++)); do
        e=" $expr "
        e=${e// $off / 0 }
        for ((i = 0; i < n; i++)); do
            e=${e// ${names[i]} / $(((combo >> i) & 1)) }
        done
        value=$((e))
        if { [ "$branch" = True ] && [ "$value" -ne 0 ]; } || { [ "$branch" = False ] && [ "$value" -eq 0 ]; }; then
            return 0
        fi
    done
    return 1
}

# no_unconfined_transition_unless BOOL: no rule lets the broker enter an
# unconfined domain (unconfined_t or any unconfined_domain_type) while
# BOOL is false.
no_unconfined_transition_unless() {
    local off=$1 unconfined attributes rules line target bad=""
    unconfined=$(seinfo "$policy" -a unconfined_domain_type -x | awk 'NR > 2 { print $1 }') || return 2
    unconfined=$(printf '%s\nunconfined_t\n' "$unconfined" | sort -u)
    [ "$(wc -l <<<"$unconfined")" -gt 1 ] || { echo "no unconfined domains found"; return 2; }
    attributes=$(seinfo "$policy" -a | awk 'NR > 2 { print $1 }') || return 2
    rules=$(search -A -s qga_warden_t -c process -p transition,dyntransition) || { echo "$rules"; return 2; }
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        target=$(awk '{ split($3, a, ":"); print a[1] }' <<<"$line")
        local members=$target
        # A rule written for an attribute counts for each of its types.
        if grep -qxF "$target" <<<"$attributes"; then
            members=$(seinfo "$policy" -a "$target" -x | awk 'NR > 2 { print $1 }') || return 2
        fi
        if grep -qxFf <(printf '%s\n' "$members") <<<"$unconfined" && active_with "$off" "$line"; then
            bad+="$line"$'\n'
        fi
    done <<<"$rules"
    rules=$(search -T -s qga_warden_t -c process) || { echo "$rules"; return 2; }
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        target=$(sed -E 's/^type_transition [^ ]+ [^ ]+ ([^;]+);.*/\1/' <<<"$line")
        if grep -qxF "$target" <<<"$unconfined" && active_with "$off" "$line"; then
            bad+="$line"$'\n'
        fi
    done <<<"$rules"
    [ -z "$bad" ] || { printf 'in force with %s off: %s' "$off" "$bad"; return 1; }
}

# labels PATH CLASS TYPE: the module's own file contexts give PATH (a file
# of CLASS) the type TYPE.
labels() {
    local got
    got=$(matchpathcon -N -f "$work/qga_warden.fc" -m "$2" "$1" 2>&1) || { echo "$got"; return 1; }
    [ "$(awk '{ print $2 }' <<<"$got" | cut -d: -f3)" = "$3" ] || { echo "$got"; return 1; }
}

# interfaces_usable: a module calling every interface of qga_warden.if (the
# one beside the module under test) compiles and links.
interfaces_usable() {
    local src dir name missing=""
    src=$(dirname "$module")
    dir=$work/iftest
    mkdir -p "$dir"
    cp "$src/qga_warden.te" "$src/qga_warden.if" "$dir/"
    cat >"$dir/qga_warden_iftest.te" <<'EOT'
policy_module(qga_warden_iftest, 1.0.0)
type iftest_t;
domain_type(iftest_t)
type iftest_file_t;
files_type(iftest_file_t)
qga_warden_domtrans(iftest_t)
qga_warden_stream_connect(iftest_t)
qga_warden_read_config(iftest_t)
qga_warden_read_log(iftest_t)
qga_warden_read_guest_files(iftest_file_t)
qga_warden_manage_guest_files(iftest_file_t)
qga_warden_child_read_files(iftest_file_t)
qga_warden_admin(iftest_t)
EOT
    : >"$dir/qga_warden_iftest.fc"
    : >"$dir/qga_warden_iftest.if"
    for name in $(sed -nE "s/^interface\(\`([a-z_]+)'.*/\1/p" "$src/qga_warden.if"); do
        grep -q "^$name(" "$dir/qga_warden_iftest.te" || missing+=" $name"
    done
    [ -z "$missing" ] || { echo "not called by the test module:$missing"; return 1; }
    make -s -C "$dir" -f /usr/share/selinux/devel/Makefile qga_warden_iftest.pp >"$dir/build.log" 2>&1 ||
        { cat "$dir/build.log"; return 1; }
    semodule_link -o "$dir/linked.lpp" "$work/ref/base.pp" "$module" "$dir/qga_warden_iftest.pp" >"$dir/link.log" 2>&1 ||
        { grep -v 'loading package from file' "$dir/link.log"; return 1; }
}

fe=qga_warden_frontend_t
br=qga_warden_t
inet_classes=tcp_socket,udp_socket,rawip_socket,sctp_socket,icmp_socket,packet_socket
file_classes=file,dir,lnk_file,chr_file,blk_file,sock_file,fifo_file
socket_classes=socket,unix_stream_socket,unix_dgram_socket,vsock_socket,tcp_socket,udp_socket,rawip_socket,packet_socket,netlink_socket,netlink_route_socket,key_socket
inet_perms=create,bind,connect,listen,accept,read,write,name_bind,name_connect,node_bind

# Claims made of several queries.
frontend_names_no_network_object() {
    none -A -s $fe -p name_connect,name_bind,node_bind && none -A -s $fe -c node,netif
}
frontend_handed_descriptors_only() {
    local out bad
    out=$(search -A -s $fe -c "$file_classes,$socket_classes") || { echo "$out"; return 2; }
    # Rules for the domain attribute are the reference policy's; rules on
    # its own /proc entries and program are about itself.
    bad=$(grep -vE "^allow domain |^allow $fe ($fe|qga_warden_frontend_exec_t):" <<<"$out" |
        grep -vE "^allow $fe [^ ]+:[a-z_]+ (\\{ read write \\}|read|write);\$") || true
    [ -z "$bad" ] || { printf 'found: %s\n' "$bad"; return 1; }
    grep -qxF "allow $fe qga_warden_t:unix_stream_socket { read write };" <<<"$out" ||
        { echo "missing: read and write of the socketpair"; return 1; }
}
frontend_cannot_exec() {
    none -A -s $fe -p execute_no_trans &&
        none -A -s $fe -c process -p transition,dyntransition,setexec,execmem,execstack,execheap,ptrace &&
        none -T -s $fe -c process
}
frontend_capabilities() {
    only "^allow $fe $fe:capability \\{ setgid setpcap setuid \\};\$" -A -s $fe -c capability &&
        none -A -s $fe -c capability2,cap_userns,cap2_userns
}
broker_appends_audit_trail() {
    none -A -s $br -t qga_warden_log_t -c file -p write,setattr,unlink,rename,link,relabelfrom,relabelto &&
        has "allow $br qga_warden_log_t:file { append create getattr ioctl lock open };" \
            -A -s $br -t qga_warden_log_t -c file -p append
}
broker_enters_frontend() {
    has "allow $br $fe:process { sigkill signal signull transition };" -A -s $br -t $fe -c process -p transition &&
        has "allow $br $fe:process2 nnp_transition;" -A -s $br -t $fe -c process2 &&
        has "allow $fe qga_warden_frontend_exec_t:file { entrypoint execute getattr ioctl lock map open read };" \
            -A -s $fe -t qga_warden_frontend_exec_t -c file -p entrypoint
}
broker_no_shadow_write() {
    none -A -s $br -t shadow_t -p write,append,create,setattr,rename,unlink &&
        has "type_transition $br passwd_exec_t:process passwd_t; [ qga_warden_passwords ]:True" -T -s $br -t passwd_exec_t
}
broker_children_confined() {
    local t
    for t in bin_t shell_exec_t qga_warden_hook_exec_t; do
        has "type_transition $br $t:process qga_warden_child_t; [ qga_warden_exec_unconfined && qga_warden_exec ]:False" \
            -T -s $br -t $t -c process || return 1
    done
}

echo
echo "The frontend ($fe), under every combination of Booleans:"
for t in etc_t shadow_t user_home_t; do
    claim "no read or write of $t files (or links)" \
        none -A -s $fe -t $t -c file,lnk_file -p read,write,append,open,create
done
claim "no TCP, UDP, raw, SCTP, ICMP or packet socket permission" \
    none -A -s $fe -c "$inet_classes" -p "$inet_perms"
claim "no name_connect, name_bind or node_bind (no port, address or interface), no node or netif rule" \
    frontend_names_no_network_object
claim "execute only on its own program (the kernel maps it at exec) and what the reference policy gives every domain (ld_so_t, lib_t, textrel_shlib_t)" \
    only "^allow ($fe qga_warden_frontend_exec_t|domain (ld_so_t|lib_t|textrel_shlib_t)):file " -A -s $fe -p execute
claim "no execute_no_trans, no domain transition, no setexec, no executable memory" \
    frontend_cannot_exec
claim "beyond what the reference policy gives every domain, only read and write of what the broker hands it (channel, socketpair, log pipe, /dev/null): no open, create, ioctl, getattr" \
    frontend_handed_descriptors_only
claim "capabilities: setuid, setgid, setpcap only (to drop to its account before seccomp)" \
    frontend_capabilities

echo
echo "The broker ($br):"
claim "cannot write, create, rename, remove or relabel the agent policy file (qga_warden_conf_t)" \
    none -A -s $br -t qga_warden_conf_t -c file,dir,lnk_file \
    -p write,append,create,setattr,unlink,rename,link,add_name,remove_name,reparent,rmdir,relabelfrom,relabelto
claim "appends to the audit trail (qga_warden_log_t) and cannot write it otherwise, truncate, rename or remove it" \
    broker_appends_audit_trail
claim "starts the frontend in $fe: type_transition on qga_warden_frontend_exec_t" \
    has "type_transition $br qga_warden_frontend_exec_t:process $fe;" -T -s $br -t qga_warden_frontend_exec_t -c process
claim "the transition is allowed (also under NoNewPrivileges) and the frontend program is its entrypoint" \
    broker_enters_frontend
claim "runs no program in its own domain (no execute_no_trans on anything)" \
    none -A -s $br -p execute_no_trans
claim "never writes /etc/shadow itself (passwords go through chpasswd in passwd_t)" \
    broker_no_shadow_write
claim "with qga_warden_exec off, no transition into an unconfined domain, whatever the other Booleans" \
    no_unconfined_transition_unless qga_warden_exec
claim "with qga_warden_exec and qga_warden_exec_unconfined on, guest-exec children run in unconfined_t" \
    has "type_transition $br bin_t:process unconfined_t; [ qga_warden_exec_unconfined && qga_warden_exec ]:True" -T -s $br -t bin_t -c process
claim "otherwise programs it starts (bin_t, shell_exec_t, the fsfreeze hook) run in qga_warden_child_t" \
    broker_children_confined
claim "changes a child's account (setuid, setgid) only with qga_warden_exec or qga_warden_ssh_keys" \
    only "^allow $br $br:capability \\{ setgid setuid \\}; \\[ (qga_warden_exec|qga_warden_ssh_keys) \\]:True\$" -A -s $br -c capability -p setuid,setgid

echo
echo "Booleans and their defaults (those of the agent's built-in policy):"
for b in qga_warden_exec:false qga_warden_exec_unconfined:false qga_warden_files:false \
    qga_warden_passwords:true qga_warden_ssh_keys:true qga_warden_hotplug:true \
    qga_warden_time:true qga_warden_power:true; do
    claim "${b%%:*} defaults to ${b##*:}" bool_default "${b%%:*}" "${b##*:}"
done

echo
echo "File contexts:"
semodule_unpackage "$module" "$work/qga_warden.mod" "$work/qga_warden.fc"
claim "every context in the module's file contexts is valid in the policy" \
    setfiles -c "$policy" "$work/qga_warden.fc"
while read -r path class type; do
    claim "$path ($class) is $type" labels "$path" "$class" "$type"
done <<'EOF'
/usr/sbin/qga-warden file qga_warden_exec_t
/usr/libexec/qga-warden/qga-warden-frontend file qga_warden_frontend_exec_t
/usr/lib/qga-warden/qga-warden-frontend file qga_warden_frontend_exec_t
/etc/qga-warden dir qga_warden_conf_t
/etc/qga-warden/policy.toml file qga_warden_conf_t
/run/qga-warden dir qga_warden_state_t
/run/qga-warden/qga-warden.frozen file qga_warden_state_t
/run/qga-warden.pid file qga_warden_runtime_t
/var/log/qga-warden dir qga_warden_log_t
/var/log/qga-warden/audit.log file qga_warden_log_t
/etc/qemu/fsfreeze-hook file qga_warden_hook_exec_t
/dev/virtio-ports/org.qemu.guest_agent.0 chr_file qga_warden_port_t
/dev/vport0p1 chr_file virtio_device_t
/dev/vport12p3 chr_file virtio_device_t
EOF

echo
echo "Interfaces:"
claim "every interface in qga_warden.if is called by a test module that builds and links with base.pp and the module" \
    interfaces_usable

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
