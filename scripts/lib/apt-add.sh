# Sourced by the install scripts: `apt_add PURPOSE PACKAGE...` installs the packages the
# machine lacks from its own apt sources, and only by adding packages. It simulates the
# install first; if apt would remove, downgrade or upgrade any package the machine has, it
# installs nothing, names those packages and returns 3. It says what it adds before adding it.
# Needs root (or sudo); runs `apt-get update` once per script run, only when something is missing.

apt_add() {
    purpose=$1
    shift
    missing=""
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing="$missing $pkg"
        fi
    done
    if [ -z "$missing" ]; then
        echo "$purpose: already installed:" "$@"
        return 0
    fi
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        sudo="sudo"
    fi
    if [ -z "${P2PDMA_APT_UPDATED:-}" ]; then
        $sudo apt-get update -qq
        P2PDMA_APT_UPDATED=1
    fi
    # shellcheck disable=SC2086
    plan=$(LC_ALL=C apt-get install -s --no-install-recommends $missing 2>&1) || {
        echo "$purpose: apt cannot install$missing:" >&2
        printf '%s\n' "$plan" | grep -E '^(E:| )' | head -n 8 >&2
        return 3
    }
    # "Inst NAME [OLD] (NEW ...)" replaces an installed package; "Remv NAME" removes one.
    changed=$(printf '%s\n' "$plan" | awk '/^Remv /{print "remove " $2 " " $3} /^Inst [^ ]+ \[/{print "replace " $2 " " $3 " by " $4}' | tr -d '[](')
    if [ -n "$changed" ]; then
        echo "$purpose: installing$missing would change packages this machine has; nothing installed:" >&2
        printf '  %s\n' "$changed" >&2
        echo "  (install them yourself if that is what you want: apt-get install$missing)" >&2
        return 3
    fi
    added=$(printf "%s\n" "$plan" | awk '/^Inst /{print $2}' | paste -sd " " -)
    echo "$purpose: installing$missing (adds: $added)"
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    echo "$purpose: added $added"
}
