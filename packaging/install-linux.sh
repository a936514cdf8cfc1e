#!/bin/sh
# Install the frozen ODL Studio bundle for the current user (no root, no Python needed).
#
#   ./install.sh               copy this folder to ~/.local/opt/odlstudio, add `odlstudio` to ~/.local/bin,
#                              a menu entry and the icon
#   ./install.sh --uninstall   remove all of that again
#   PREFIX=/opt/odl ./install.sh   another prefix (e.g. system-wide, then run as root)
#
# It ships beside the `odlstudio` executable in dist/odlstudio/ (packaging/build.py copies it there).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-"$HOME/.local"}
DEST="$PREFIX/opt/odlstudio"
BIN="$PREFIX/bin"
APPS="$PREFIX/share/applications"
ICONS="$PREFIX/share/icons/hicolor"

refresh() {
    command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$APPS" 2>/dev/null || true
    command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$ICONS" 2>/dev/null || true
}

if [ "${1:-}" = "--uninstall" ]; then
    # Only remove a folder that is an ODL Studio bundle.
    if [ -f "$DEST/BUILD-INFO.json" ] && [ -x "$DEST/odlstudio" ]; then rm -rf "$DEST"; fi
    rm -f "$BIN/odlstudio" "$APPS/odlstudio.desktop" \
          "$ICONS/256x256/apps/odlstudio.png" "$ICONS/scalable/apps/odlstudio.svg"
    refresh
    echo "ODL Studio removed from $PREFIX (your data in ~/.local/share/odlstudio is kept)"
    exit 0
fi
if [ -n "${1:-}" ]; then
    echo "usage: $0 [--uninstall]" >&2
    exit 2
fi
if [ ! -x "$HERE/odlstudio" ] || [ ! -d "$HERE/_internal" ]; then
    echo "install.sh: $HERE is not an ODL Studio bundle (odlstudio and _internal/ expected beside me)" >&2
    exit 1
fi

if [ "$HERE" != "$DEST" ]; then
    if [ -e "$DEST" ] && ! { [ -f "$DEST/BUILD-INFO.json" ] && [ -x "$DEST/odlstudio" ]; }; then
        echo "install.sh: $DEST exists and is not an ODL Studio bundle; not touching it" >&2
        exit 1
    fi
    mkdir -p "$PREFIX/opt"
    rm -rf "$DEST.new"
    cp -a "$HERE" "$DEST.new"
    rm -rf "$DEST"
    mv "$DEST.new" "$DEST"
fi

mkdir -p "$BIN" "$APPS" "$ICONS/256x256/apps" "$ICONS/scalable/apps"
ln -sf "$DEST/odlstudio" "$BIN/odlstudio"
cp "$DEST/odlstudio.png" "$ICONS/256x256/apps/odlstudio.png"
[ -f "$DEST/_internal/assets/icons/odlstudio.svg" ] && cp "$DEST/_internal/assets/icons/odlstudio.svg" "$ICONS/scalable/apps/odlstudio.svg"
# Absolute Exec/TryExec: the menu entry works even when $BIN is not on PATH.
sed -e "s|^Exec=odlstudio|Exec=$DEST/odlstudio|" -e "s|^TryExec=odlstudio|TryExec=$DEST/odlstudio|" \
    "$DEST/odlstudio.desktop" > "$APPS/odlstudio.desktop"
refresh
echo "ODL Studio installed in $DEST"
echo "start it from the applications menu or run: $BIN/odlstudio"
case ":$PATH:" in *":$BIN:"*) ;; *) echo "(add $BIN to PATH to type just 'odlstudio')" ;; esac
