# Sourced by the benches (after they set `root`, the checkout): what each one starts with.

# The binary to measure: AFTERCARE_BIN, to compare two builds without rebuilding either, or
# else this tree's release build (built now; CARGO_TARGET_DIR is honoured).
aftercare_bin() {
  if [ -n "${AFTERCARE_BIN:-}" ]; then
    echo "$AFTERCARE_BIN"
  else
    (cd "$root" && cargo build --release --quiet) >&2 || return 1
    echo "${CARGO_TARGET_DIR:-$root/target}/release/aftercare"
  fi
}
