# shellcheck shell=bash
# Sourced by the scripts: installs missing Debian packages when run as root, else names them.

# need_pkgs PKG...: every package installed, or exit with the list of what is missing.
need_pkgs() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
		exit 1
	fi
	echo ">> installing ${missing[*]}" >&2
	if [ -z "${SHMRING_APT_UPDATED:-}" ]; then
		# A failed update is said here, not left to surface as a missing package later.
		if ! DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2; then
			echo "apt-get update failed: trying the install with the lists there are" >&2
		fi
		export SHMRING_APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# What building the library, its tests and its fuzzers needs.
BUILD_PKGS=(cmake make gcc clang pkg-config liburcu-dev libcriterion-dev libclang-rt-14-dev
	libc6-dev procps util-linux)
# What scripts/test.sh needs besides: spin (scripts/spin.sh) and, on x86-64, what
# scripts/headers.sh compiles for other targets with: gcc-multilib (32-bit x86) and the C
# libraries of aarch64 and 32-bit ARM (for clang --target; gcc's cross compilers would take
# gcc-multilib away: Debian 12 makes them conflict).
TEST_PKGS=(spin)
if [ "$(uname -m)" = x86_64 ]; then
	TEST_PKGS+=(gcc-multilib libc6-dev-arm64-cross libc6-dev-armhf-cross)
fi
