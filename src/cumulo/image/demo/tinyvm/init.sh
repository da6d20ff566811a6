#!/bin/sh
# Cumulo tiny-vm init: set the guest up from its config drive, or without one from the metadata
# service as cloud-init's OpenStack datasource does (the first NIC up with DHCP, then
# http://169.254.169.254/openstack/latest/), then hand PID 1 to busybox init, which keeps a root
# shell on the console (ttyS0) and powers off on the ACPI power button.
# Module lists (@STAGE1@, @STAGE2@, @VFAT@) are filled in at build time, in dependency order.
# Under TCG every process this script forks costs milliseconds: it uses shell builtins where it can.
export PATH=/bin HOME=/root
KVER=$(uname -r)
echo "Cumulo tiny-vm booting (kernel $KVER)"
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev 2>/dev/null
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
CONFIG_DIR=/mnt/config
LATEST=$CONFIG_DIR/openstack/latest
METADATA_URL=http://169.254.169.254/openstack/latest

# No PCI bus (microvm: virtio over MMIO, pci=off): the virtio PCI modules would find nothing.
PCI=0
for d in /sys/bus/pci/devices/*; do [ -e "$d" ] && PCI=1 && break; done

# Whether a virtio device of id $1 is there (0x0001 a NIC, 0x0003 virtio-serial), once the virtio
# transports are loaded.
virtio_present() {
    for d in /sys/bus/virtio/devices/*; do
        [ -r "$d/device" ] && read -r id < "$d/device" && [ "$id" = "$1" ] && return 0
    done
    return 1
}
virtio_net_present() { virtio_present 0x0001; }

load_modules() {
    for m in "$@"; do
        case "$m" in
            virtio_pci*) [ $PCI -eq 1 ] || continue ;;
            # A PCI machine may get a NIC later (hot plug): the driver is there for it.
            failover|net_failover|virtio_net) [ $PCI -eq 1 ] || virtio_net_present || continue ;;
            virtio_console) virtio_present 0x0003 || continue ;;  # the guest agent's port only
        esac
        insmod "/lib/modules/$KVER/$m.ko" 2>/dev/null
    done
}

# A JSON file flattened to one line (one process; json_str and json_obj_values read the result).
json_flat() {
    [ -f "$1" ] && tr -d '\r\n' < "$1"
}

# The value of the first "key": "string" in flattened JSON ($2). Values holding escaped quotes
# are not matched; callers filter the characters they accept anyway.
json_str() {
    sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\\([^\"\\\\]*\\)\".*/\\1/p" <<EOF
$2
EOF
}

# Flattened network_data.json ($1) without its routes (host routes, the metadata route of a network
# without a router, Nova's default route), so that json_str (which takes the last match) never takes
# a route's netmask or gateway for the NIC's own; then the default route's gateway, if any, as
# "default_gateway" on a line of its own (Nova's layout gives the gateway only there).
json_nic() {
    sed 's/"routes"[[:space:]]*:[[:space:]]*\[[^]]*\]//g' <<EOF
$1
EOF
    printf '%s\n' "$1" | tr '{' '\n' | grep '"network"[[:space:]]*:[[:space:]]*"0\.0\.0\.0"' | head -n 1 \
        | sed -n 's/.*"gateway"[[:space:]]*:[[:space:]]*"\([0-9.]*\)".*/"default_gateway": "\1"/p'
}

# The string values of the JSON object under "key" ({"name": "value", ...}) in flattened JSON
# ($2), one per line.
json_obj_values() {
    sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*{\\([^}]*\\)}.*/\\1/p" <<EOF | awk -F'"' '{ for (i = 4; i <= NF; i += 4) print $i }'
$2
EOF
}

find_config_drive() {
    for label in config-2 CONFIG-2; do
        dev=$(findfs "LABEL=$label" 2>/dev/null) && { echo "$dev"; return 0; }
    done
    return 1
}

load_modules @STAGE1@

# ACPI power button -> orderly poweroff (the host's "stop" is an ACPI powerdown), from now on.
acpid -c /etc/acpi 2>/dev/null

# The QEMU guest agent (Debian's qemu-ga: the host's exec into this guest) on the virtio-serial
# port the host names org.qemu.guest_agent.0 (its image sets hw_qemu_guest_agent=yes). The port
# and its name come a little after virtio_console loads, so a background job waits for them (up
# to ~20 s) while the boot goes on; no udev here, so the /dev/virtio-ports link is made by hand.
# Under TCG the guest has one slow vCPU: the job (and qemu-ga loading its libraries) runs at nice
# 19 so that it takes the CPU the boot leaves idle, and qemu-ga gets nice 0 back once user_data ran.
# -b: the RPCs qemu-ga refuses (guest files, keys and passwords, suspend, CPUs, memory, clock).
QGA_PORT=org.qemu.guest_agent.0
QGA_PID=""
if [ -x /bin/qemu-ga ] && virtio_present 0x0003; then
    (
        i=0
        while [ $i -lt 200 ]; do
            for p in /sys/class/virtio-ports/vport*; do
                [ -r "$p/name" ] && read -r pname < "$p/name" && [ "$pname" = $QGA_PORT ] || continue
                mkdir -p /dev/virtio-ports /run/qga
                ln -sf "../${p##*/}" /dev/virtio-ports/$QGA_PORT
                exec /bin/qemu-ga -m virtio-serial -p /dev/virtio-ports/$QGA_PORT \
                    -t /run/qga -l /var/log/qemu-ga.log -b @QGA_BLOCK@
            done
            i=$((i + 1))
            sleep 0.1
        done
        echo "cumulo-tiny-vm: no guest agent port $QGA_PORT"
    ) </dev/null >/dev/console 2>&1 &
    QGA_PID=$!  # qemu-ga itself once the job found the port (it runs in the foreground: no -d)
    renice 19 -p $QGA_PID >/dev/null  # here, not in the job: surely before the renice 0 below
fi

# The config drive: on virtio-blk usually; a CD-ROM (IDE/SATA) needs the second module set.
dev=""
i=0
while [ $i -lt 30 ]; do
    dev=$(find_config_drive) && break
    [ $i -eq 2 ] && load_modules @STAGE2@
    i=$((i + 1))
    sleep 0.1
done
# ISO9660 (what Cumulo and Nova make); a VFAT config drive loads its modules only when it shows.
if [ -n "$dev" ] && mkdir -p $CONFIG_DIR && { mount -o ro -t iso9660 "$dev" $CONFIG_DIR 2>/dev/null \
        || { load_modules @VFAT@; mount -o ro -t vfat "$dev" $CONFIG_DIR 2>/dev/null; }; }; then
    echo "cumulo-tiny-vm: config drive $dev mounted on $CONFIG_DIR"
    DRIVE=1
else
    echo "cumulo-tiny-vm: no config drive found"
    DRIVE=0
    LATEST=/run/metadata/openstack/latest  # filled from the metadata service once a NIC is up
fi

# Without a config drive: meta_data.json and user_data from the metadata service into $LATEST
# (meta_data.json retried a few times: the service may come up with the network; no user_data is
# a 404; busybox's own wget -T crashes in Debian's build: `timeout` bounds each fetch). The rest of
# the boot then reads $LATEST as it reads the config drive.
fetch_metadata() {
    mkdir -p $LATEST
    i=0
    while [ $i -lt 10 ]; do
        timeout 10 wget -q -O $LATEST/meta_data.json $METADATA_URL/meta_data.json 2>/dev/null && break
        rm -f $LATEST/meta_data.json
        i=$((i + 1))
        sleep 1
    done
    if [ ! -s $LATEST/meta_data.json ]; then
        echo "cumulo-tiny-vm: no answer from the metadata service"
        return 1
    fi
    timeout 10 wget -q -O $LATEST/user_data $METADATA_URL/user_data 2>/dev/null || rm -f $LATEST/user_data
    echo "cumulo-tiny-vm: meta_data.json from the metadata service"
}

# NICs: static IPv4 from network_data.json when it gives an address and netmask, else DHCP in
# the background (it must not hold the boot up when the network has no DHCP server). Without a
# config drive the first NIC waits for its lease (at most ~30 s), then the metadata service answers.
ip link set lo up
nics=""
for path in /sys/class/net/*; do
    nic=${path##*/}
    [ "$nic" = lo ] || [ ! -e "$path" ] || nics="$nics $nic"
done
addr="" mask="" gw=""
if [ -n "$nics" ]; then
    ND=$(json_nic "$(json_flat $LATEST/network_data.json)")
    addr=$(json_str ip_address "$ND" | tr -cd '0-9.')
    mask=$(json_str netmask "$ND" | tr -cd '0-9.')
    gw=$(json_str gateway "$ND" | tr -cd '0-9.')
    [ -n "$gw" ] || gw=$(json_str default_gateway "$ND" | tr -cd '0-9.')
fi
first=1
for nic in $nics; do
    ip link set "$nic" up
    if [ $first -eq 1 ] && [ -n "$addr" ] && [ -n "$mask" ]; then
        eval "$(ipcalc -p "$addr" "$mask")"
        ip addr add "$addr/$PREFIX" dev "$nic" && echo "cumulo-tiny-vm: $nic $addr/$PREFIX"
        [ -n "$gw" ] && ip route add default via "$gw" dev "$nic" 2>/dev/null
    elif [ $first -eq 1 ] && [ $DRIVE -eq 0 ]; then
        echo "cumulo-tiny-vm: $nic up (DHCP, waiting for a lease)"
        if udhcpc -i "$nic" -q -n -t 15 -T 2 -s /etc/udhcpc.script >/dev/null 2>&1; then
            fetch_metadata
        else
            echo "cumulo-tiny-vm: $nic got no DHCP lease (retrying in the background)"
            udhcpc -i "$nic" -b -q -t 5 -T 2 -s /etc/udhcpc.script >/dev/null 2>&1 &
        fi
    else
        udhcpc -i "$nic" -b -q -t 5 -T 2 -s /etc/udhcpc.script >/dev/null 2>&1 &
        echo "cumulo-tiny-vm: $nic up (DHCP in the background)"
    fi
    first=0
done

# Hostname: letters, digits, '-' and '.', at most 63 characters (a DNS label, as Nova makes them).
META=$(json_flat $LATEST/meta_data.json)
name=""
[ -n "$META" ] && name=$(json_str hostname "$META" | tr -cd 'A-Za-z0-9.-' | cut -c1-63)
[ -n "$name" ] || name=tiny-vm
hostname "$name"
echo "$name" > /etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$name" > /etc/hosts

# Public keys from meta_data.json ("public_keys": {"name": "ssh-... key"}).
case "$META" in *'"public_keys"'*)
    keys=$(json_obj_values public_keys "$META" | grep -E '^(ssh-|ecdsa-|sk-)')
    if [ -n "$keys" ]; then
        mkdir -p -m 700 /root/.ssh
        (umask 077; echo "$keys" > /root/.ssh/authorized_keys)
        n=0
        while read -r _key; do n=$((n + 1)); done <<EOF
$keys
EOF
        echo "cumulo-tiny-vm: installed $n public key(s)"
    fi ;;
esac

# The persistent root disk. The tiny VM runs from its initramfs (in RAM, fresh at every boot); what
# persists is its root disk: the image's disk, or the volume the server boots from. When that disk
# (any disk) carries an ext2/3/4 filesystem labelled cumulo-root (`mke2fs -L cumulo-root`), it is
# mounted read-write on /mnt/root before user_data runs, so a change written there (and synced) is
# seen again after a reboot, or by a new server booted from the same volume.
if root_dev=$(findfs LABEL=cumulo-root 2>/dev/null) && mkdir -p /mnt/root \
        && mount -t ext4 "$root_dev" /mnt/root 2>/dev/null; then
    echo "cumulo-tiny-vm: root disk $root_dev mounted on /mnt/root"
fi

# user_data runs when it is a script (starts with "#!"); its output goes to the console.
magic=""
[ -f $LATEST/user_data ] && IFS= read -r magic < $LATEST/user_data
if [ "${magic%"${magic#??}"}" = "#!" ]; then
    cp $LATEST/user_data /run/user_data && chmod 700 /run/user_data
    echo "cumulo-tiny-vm: running user_data"
    /run/user_data
    echo "cumulo-tiny-vm: user_data exited $?"
fi
[ -n "$QGA_PID" ] && renice 0 -p "$QGA_PID" >/dev/null 2>&1  # the guest agent back to nice 0

# A NIC that shows up later (hot plug: only a PCI machine has it) comes up by itself, with DHCP;
# one that goes (hot unplug) is named on the console.
# This kernel runs no uevent helper, so a watcher looks at /sys/class/net once a second; it waits
# with `read -t` on a FIFO, a shell builtin, so it forks nothing while no NIC comes or goes.
if [ $PCI -eq 1 ] && mkfifo /run/nic-tick 2>/dev/null; then
    (
        exec 3<>/run/nic-tick
        seen=" lo$nics "
        while :; do
            read -t 1 -u 3 _
            now=" "
            for path in /sys/class/net/*; do
                nic=${path##*/}
                [ -e "$path" ] || continue
                now="$now$nic "
                case "$seen" in *" $nic "*) continue ;; esac
                ip link set "$nic" up
                echo "cumulo-tiny-vm: $nic hot-plugged, up (DHCP in the background)"
                udhcpc -i "$nic" -b -q -t 5 -T 2 -s /etc/udhcpc.script >/dev/null 2>&1 &
            done
            for nic in $seen; do
                case "$now" in *" $nic "*) ;; *) echo "cumulo-tiny-vm: $nic unplugged" ;; esac
            done
            seen=$now
        done
    ) </dev/null >/dev/console 2>&1 &
fi

read -r up _ < /proc/uptime
echo "cumulo-tiny-vm ready hostname=$name uptime=$up"
: > /run/init-handoff  # the power button's script: busybox init (PID 1) now handles poweroff
exec /bin/init
