#!/usr/bin/env bash
# Cross-builds the desktop app for Windows (x86_64-pc-windows-gnu, MinGW-w64) on Debian/Ubuntu
# and wraps it in a per-user NSIS installer: artifacts/windows/Kotodama-setup-<version>.exe.
# Installs what the build needs when it is missing (the Rust target, MinGW-w64, NSIS).
# Measured here (2 cores): a clean release cross-build ≈ 6 min, the installer ≈ 9 MB.
#
# The exe needs Windows' own DLLs and WebView2Loader.dll, which the installer puts beside it (a
# windows-gnu build links Microsoft's loader as a DLL; the webview2-com-sys crate carries it).
# On the Windows machine it needs the Microsoft Edge WebView2 Runtime (Evergreen): the installer
# and the app both say so when it is missing.
#
# CARGO_TARGET_DIR is honoured (default: target/).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh

TARGET=x86_64-pc-windows-gnu
ensure_rust
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  echo "==> adding the Rust target $TARGET"
  rustup target add "$TARGET"
fi
ensure_apt gcc-mingw-w64-x86-64 nsis

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
target_dir=${CARGO_TARGET_DIR:-target}
exe="$target_dir/$TARGET/release/kotodama-desktop.exe"
out_dir=artifacts/windows
setup="$out_dir/Kotodama-setup-$version.exe"

echo "==> building kotodama-desktop $version for Windows (release): about 25 minutes the first time on 2 cores"
started=$SECONDS
cargo build --release --target "$TARGET" -p kotodama-desktop --features custom-protocol
echo "==> built $exe in $((SECONDS - started)) s ($(du -h "$exe" | cut -f1))"

# The loader that webview2-com-sys's build script copied for this target.
loader=$(ls -t "$target_dir/$TARGET"/release/build/webview2-com-sys-*/out/x64/WebView2Loader.dll | head -n1)

# Anything else but a Windows system DLL would have to ship beside the exe: say so instead of
# producing an installer that cannot start.
system_dlls='^(kernel32|user32|gdi32|advapi32|shell32|ole32|oleaut32|combase|mmdevapi|comctl32|comdlg32|uxtheme|dwmapi|shlwapi|ws2_32|bcrypt|bcryptprimitives|crypt32|secur32|ntdll|userenv|winmm|version|imm32|propsys|dwrite|d2d1|d3d11|dxgi|setupapi|hid|rpcrt4|powrprof|msimg32|winspool\.drv|usp10|iphlpapi|ncrypt|msvcrt|api-ms-win-.*|ext-ms-win-.*|webview2loader)(\.dll)?$'
others=$(x86_64-w64-mingw32-objdump -p "$exe" | sed -n 's/^\s*DLL Name: //p' | tr 'A-Z' 'a-z' \
  | grep -Ev "$system_dlls" || true)
if [ -n "$others" ]; then
  echo "kotodama: the exe needs DLLs that Windows does not have: $others" >&2
  exit 1
fi

# What ships: the exe without its symbol table (release keeps it: 50 → 36 MB) and the loader.
# artifacts/windows/app/ also runs as it is (a portable copy).
mkdir -p "$out_dir/app"
x86_64-w64-mingw32-strip -o "$out_dir/app/kotodama-desktop.exe" "$exe"
cp "$loader" "$out_dir/app/WebView2Loader.dll"
# makensis works in the script's directory: absolute paths.
makensis -V2 -DVERSION="$version" -DEXE="$PWD/$out_dir/app/kotodama-desktop.exe" \
  -DLOADER="$PWD/$out_dir/app/WebView2Loader.dll" -DICON="$PWD/icons/icon.ico" \
  -DOUTFILE="$PWD/$setup" \
  scripts/windows/kotodama.nsi
echo "==> $setup ($(du -h "$setup" | cut -f1), $(stat -c %s "$setup") bytes)"
echo "    On Windows 10/11 (64-bit): run it, no administrator rights needed; it installs into"
echo "    %LOCALAPPDATA%\\Programs\\Kotodama with a Start menu entry and an uninstaller."
